// SPDX-License-Identifier: Apache-2.0
// The vfio source against the fake kernel: layout, every step of Start and
// its rollback (a fault injected at each call in turn), busy groups,
// memlock, restart re-attach, hot add/remove and device fds.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "vfio/fake_kernel.h"
#include "vfio/iova_layout.h"
#include "vfio/vfio_source.h"

namespace physpool::vfio {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kEduLimit = uint64_t{1} << 28;
const char kEdu[] = "0000:00:01.0";

int CountEntries(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  int n = 0;
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

std::vector<IovaRange> QemuRanges() {
  return {{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};
}

TEST(IovaLayoutTest, LowMemoryBelowTheLimitRestAboveNeverAtZero) {
  LayoutConfig c;
  c.page_size = 2 * kMiB;
  c.max_segment_bytes = 8 * kMiB;
  c.dma_limits = {kEduLimit};
  c.pool = {{0, 24 * kMiB, 8 * kMiB}};
  ASSERT_OK_AND_ASSIGN(auto plan, PlanLayout(c, QemuRanges()));
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].iova, 2 * kMiB);  // IOVA 0 is never used
  EXPECT_EQ(plan[0].bytes, 8 * kMiB);
  EXPECT_EQ(plan[0].freelist, kLowFreelist);
  EXPECT_EQ(plan[1].iova, kEduLimit);
  EXPECT_EQ(plan[1].freelist, 0u);
  EXPECT_EQ(plan[2].iova, kEduLimit + 8 * kMiB);
}

TEST(IovaLayoutTest, AllLowByDefaultWhenADeviceHasALimit) {
  LayoutConfig c;
  c.dma_limits = {kEduLimit};
  c.pool = {{0, 16 * kMiB, std::nullopt}};
  ASSERT_OK_AND_ASSIGN(auto plan, PlanLayout(c, QemuRanges()));
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].freelist, kLowFreelist);
  EXPECT_LT(plan[0].iova + plan[0].bytes, kEduLimit + 1);
}

TEST(IovaLayoutTest, NeverAcrossTheMsiHoleOrPastTheTop) {
  LayoutConfig c;
  c.page_size = 2 * kMiB;
  c.iova_base = 0xfe000000;  // 30 MiB below the hole at 0xfee00000
  c.pool = {{0, 64 * kMiB, std::nullopt}};
  ASSERT_OK_AND_ASSIGN(auto plan, PlanLayout(c, QemuRanges()));
  uint64_t total = 0;
  for (const PlannedSegment& p : plan) {
    const bool below = p.iova + p.bytes - 1 <= 0xfedfffff;
    const bool above = p.iova >= 0xfef00000;
    EXPECT_TRUE(below || above) << Hex(p.iova);
    total += p.bytes;
  }
  EXPECT_EQ(total, 64 * kMiB);
  // The top: 39 bits.
  c.iova_base = 0x7fffe00000 - 4 * kMiB;
  c.pool = {{0, 8 * kMiB, std::nullopt}};
  EXPECT_THAT(
      PlanLayout(c, QemuRanges()).status(),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("do not fit")));
}

TEST(IovaLayoutTest, RejectsBadShares) {
  LayoutConfig c;
  c.pool = {{0, 3 * kMiB, std::nullopt}};  // not a 2 MiB multiple
  EXPECT_THAT(PlanLayout(c, QemuRanges()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  c.pool = {{0, 4 * kMiB, 2 * kMiB}};  // low memory, no device limit
  EXPECT_THAT(
      PlanLayout(c, QemuRanges()).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dma_limit")));
  c.dma_limits = {8 * kMiB};  // only 6 MiB between the base and the limit
  c.pool = {{0, 16 * kMiB, 8 * kMiB}};
  EXPECT_THAT(PlanLayout(c, QemuRanges()).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("below the lowest device dma_limit")));
}

// Random ranges, limits and pools: every segment lies inside one range and
// its freelist's area, page-aligned, overlapping nothing.
TEST(IovaLayoutTest, RandomLayoutsAreValid) {
  std::mt19937_64 rng(7);
  const uint64_t page = 64 * 1024;
  int planned = 0;
  for (int round = 0; round < 3000; ++round) {
    std::vector<IovaRange> ranges;
    uint64_t at = rng() % 4 * page;
    for (int i = 0, n = 1 + rng() % 4; i < n; ++i) {
      const uint64_t len = (1 + rng() % 64) * page - rng() % 2 * 4096;
      ranges.push_back({at, at + len - 1});
      at += len + (rng() % 3) * page + 4096;
    }
    LayoutConfig c;
    c.page_size = page;
    c.max_segment_bytes = (1 + rng() % 16) * page;
    if (rng() % 2) c.dma_limits = {(1 + rng() % 128) * page};
    for (int i = 0, n = 1 + rng() % 3; i < n; ++i) {
      const uint64_t bytes = (1 + rng() % 32) * page;
      PoolShare s{i, bytes, std::nullopt};
      if (!c.dma_limits.empty() && rng() % 2) s.low_bytes = rng() % 2 * page;
      c.pool.push_back(s);
    }
    auto plan = PlanLayout(c, ranges);
    if (!plan.ok()) {
      ASSERT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
      continue;
    }
    ++planned;
    std::map<uint64_t, uint64_t> seen;
    for (const PlannedSegment& p : *plan) {
      ASSERT_EQ(p.iova % page, 0u);
      ASSERT_GT(p.iova, 0u);
      ASSERT_LE(p.bytes, c.max_segment_bytes);
      bool inside = false;
      for (const IovaRange& r : ranges) {
        inside |= p.iova >= r.first && p.iova + p.bytes - 1 <= r.last;
      }
      ASSERT_TRUE(inside) << Hex(p.iova);
      ASSERT_OK_AND_ASSIGN(Area area, AreaOf(c, p.freelist));
      ASSERT_GE(p.iova, area.lo);
      ASSERT_LE(p.iova + p.bytes, area.hi);
      auto next = seen.lower_bound(p.iova);
      ASSERT_TRUE(next == seen.end() || next->first >= p.iova + p.bytes);
      if (next != seen.begin()) {
        ASSERT_LE(std::prev(next)->first + std::prev(next)->second, p.iova);
      }
      seen[p.iova] = p.bytes;
    }
  }
  EXPECT_GT(planned, 1000);
}

class VfioSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/physpool-vfio-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    kernel_.device_groups = {
        {kEdu, 1}, {"0000:00:02.0", 1}, {"0000:00:03.0", 2}};
  }
  void TearDown() override {
    std::string cmd = "rm -rf " + dir_;
    ASSERT_EQ(system(cmd.c_str()), 0);
  }

  VfioConfig Config() const {
    VfioConfig c;
    c.devices = {{kEdu, kEduLimit, ""}, {"0000:00:03.0", 0, ""}};
    c.dir = dir_ + "/backing";
    c.group_busy_timeout = absl::Milliseconds(300);
    c.layout.page_size = 2 * kMiB;
    c.layout.max_segment_bytes = 4 * kMiB;
    c.layout.dma_limits = {kEduLimit};
    c.layout.pool = {{0, 8 * kMiB, 4 * kMiB}, {1, 4 * kMiB, 0}};
    return c;
  }

  std::string dir_;
  FakeKernel kernel_;
};

TEST_F(VfioSourceTest, StartMapsEachPhyssegOnceAndEnablesBusMastering) {
  VfioSource source(Config(), &kernel_);
  ASSERT_OK(source.Start());
  ASSERT_EQ(source.segments().size(), 3u);
  EXPECT_EQ(kernel_.map_calls(), 3);
  EXPECT_EQ(source.timings().map_calls, 3);
  EXPECT_EQ(kernel_.mappings().size(), 3u);
  for (const BackedSegment& seg : source.segments()) {
    const auto all = kernel_.mappings();
    auto m = all.find(seg.spec.iova);
    ASSERT_NE(m, all.end());
    EXPECT_EQ(m->second.bytes, seg.spec.pages.value * 2 * kMiB);
    EXPECT_EQ(seg.spec.freelist, seg.spec.iova < kEduLimit ? 1u : 0u);
    EXPECT_EQ(kernel_.numa_of(seg.path), seg.spec.numa);
    // zeroed
    const auto* p = static_cast<const uint8_t*>(m->second.vaddr);
    for (uint64_t i = 0; i < m->second.bytes; i += 4096) ASSERT_EQ(p[i], 0);
  }
  EXPECT_TRUE(kernel_.bus_master(kEdu));
  EXPECT_TRUE(kernel_.bus_master("0000:00:03.0"));
  EXPECT_EQ(source.dma_avail(), 65535 - 3);
  EXPECT_EQ(source.iova_ranges().size(), 2u);
  EXPECT_EQ(CountEntries(dir_ + "/backing"), 3);
}

// A fault at every kernel call of Start in turn: Start fails naming the
// step, and leaves no mapping, no descriptor, no backing file behind.
TEST_F(VfioSourceTest, EveryFailingStepRollsBackEverything) {
  int total_calls = 0;
  {
    FakeKernel k = kernel_;
    FaultyKernel counting(&k);
    VfioSource source(Config(), &counting);
    ASSERT_OK(source.Start());
    total_calls = counting.calls();
  }
  ASSERT_GT(total_calls, 10);
  for (int err : {EINVAL, ENOMEM, EBUSY}) {
    for (int n = 1; n <= total_calls; ++n) {
      ASSERT_EQ(system(("rm -rf " + dir_ + "/backing").c_str()), 0);
      FakeKernel k = kernel_;
      FaultyKernel faulty(&k);
      faulty.FailCall(n, err);
      {
        VfioSource source(Config(), &faulty);
        absl::Status s = source.Start();
        if (err == EBUSY && faulty.failed_step() == "open group") {
          EXPECT_OK(s);  // a busy group is waited for
          continue;
        }
        ASSERT_FALSE(s.ok()) << "call " << n;
        EXPECT_THAT(std::string(s.message()), HasSubstr(faulty.failed_step()))
            << "call " << n;
        EXPECT_EQ(ErrnoOf(s), err) << s;
        EXPECT_TRUE(k.mappings().empty()) << "call " << n << ": " << s;
        EXPECT_EQ(k.open_fds(), 0) << "call " << n << ": " << s;
        EXPECT_LE(CountEntries(dir_ + "/backing"), 0)
            << "call " << n << ": " << s;
      }
    }
  }
}

TEST_F(VfioSourceTest, MapErrorsNameTheIoctlTheIovaAndTheErrno) {
  kernel_.ranges = {{0, 0xfedfffff}};
  VfioConfig c = Config();
  c.layout.iova_base = 0xfec00000;  // fits by the plan of a bigger range...
  c.layout.dma_limits = {};
  c.devices = {{kEdu, 0, ""}};
  c.layout.pool = {{0, 2 * kMiB, std::nullopt}};
  kernel_.ranges = {{0, 0xfedfffff}};
  // ...but the kernel rejects a mapping the test makes overlap.
  VfioSource first(c, &kernel_);
  ASSERT_OK(first.Start());
  int fd = -1;
  ASSERT_OK_AND_ASSIGN(fd, first.BackingFd(0xfec00000));
  void* p = mmap(nullptr, 2 * kMiB, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  absl::Status s = kernel_.MapDma(1000, p, 0xfec00000, 2 * kMiB);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAlreadyExists,
                          HasSubstr("VFIO_IOMMU_MAP_DMA iova=0xfec00000 "
                                    "size=0x200000: File exists (errno 17)")));
  s = kernel_.MapDma(1000, p, 0xfee00000, 2 * kMiB);  // the MSI window
  EXPECT_EQ(ErrnoOf(s), EINVAL);
  EXPECT_EQ(ErrnoOf(kernel_.UnmapDma(1000, 0xfec01000, 4096).status()),
            EINVAL);  // bisecting
  munmap(p, 2 * kMiB);
  close(fd);
}

TEST_F(VfioSourceTest, BusyGroupIsWaitedForNamingTheHolder) {
  kernel_.busy_answers[1] = 2;
  kernel_.holders = {"pid 57 (e2e_tenant)"};
  std::vector<std::string> notices;
  VfioSource source(Config(), &kernel_,
                    [&](const std::string& n) { notices.push_back(n); });
  ASSERT_OK(source.Start());
  ASSERT_FALSE(notices.empty());
  EXPECT_THAT(notices[0], HasSubstr("pid 57 (e2e_tenant)"));
  EXPECT_THAT(notices[0], HasSubstr("device fd"));
}

TEST_F(VfioSourceTest, BusyGroupGivesUpAfterTheTimeout) {
  kernel_.busy_answers[1] = 1 << 30;
  kernel_.holders = {"pid 57 (e2e_tenant)"};
  VfioSource source(Config(), &kernel_);
  EXPECT_THAT(source.Start(),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("/dev/vfio/1"), HasSubstr("pid 57"),
                             HasSubstr("group_busy_timeout_ms"))));
  EXPECT_EQ(kernel_.open_fds(), 0);
}

// The restart story: a tenant's device fd (a dup) keeps the group open
// after the daemon's source is gone; the next Start waits until it closes.
TEST_F(VfioSourceTest, DeviceFdHeldAcrossRestartKeepsTheGroupBusy) {
  VfioConfig c = Config();
  c.group_busy_timeout = absl::Seconds(20);
  int tenant_fd = -1;
  {
    VfioSource source(c, &kernel_);
    ASSERT_OK(source.Start());
    ASSERT_OK_AND_ASSIGN(tenant_fd, source.DeviceFd(kEdu));
    EXPECT_THAT(source.DeviceFd("0000:00:09.0").status(),
                StatusIs(absl::StatusCode::kNotFound));
  }
  // A clean stop unmaps (a kill -9 would leave the mappings to the held
  // container); the group stays open either way.
  EXPECT_EQ(kernel_.mappings().size(), 0u);
  bool noticed = false;
  VfioSource restarted(c, &kernel_, [&](const std::string&) {
    if (!noticed) kernel_.Close(tenant_fd);  // the tenant lets go
    noticed = true;
  });
  ASSERT_OK(restarted.Start(/*keep_contents=*/true));
  EXPECT_TRUE(noticed);
  EXPECT_EQ(kernel_.mappings().size(), 3u);
}

TEST_F(VfioSourceTest, MemlockIsCheckedUpFront) {
  kernel_.memlock = {false, 8 * kMiB};
  VfioSource source(Config(), &kernel_);
  EXPECT_THAT(source.Start(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("RLIMIT_MEMLOCK >= 12582912"),
                             HasSubstr("CAP_IPC_LOCK"))));
  EXPECT_EQ(kernel_.open_fds(), 0);
  kernel_.memlock = {true, 8 * kMiB};  // the capability lifts the limit
  VfioSource privileged(Config(), &kernel_);
  EXPECT_OK(privileged.Start());
}

TEST_F(VfioSourceTest, RestartReattachesTheSameBackingAtTheSameIovas) {
  std::vector<uint64_t> iovas;
  {
    VfioSource source(Config(), &kernel_);
    ASSERT_OK(source.Start());
    for (const auto& seg : source.segments()) iovas.push_back(seg.spec.iova);
    ASSERT_OK_AND_ASSIGN(int fd, source.BackingFd(iovas[1] + 4096));
    ASSERT_EQ(pwrite(fd, "lease", 5, 4096), 5);
    close(fd);
  }
  EXPECT_TRUE(kernel_.mappings().empty());
  {
    VfioSource source(Config(), &kernel_);
    ASSERT_OK(source.Start(/*keep_contents=*/true));
    std::vector<uint64_t> again;
    for (const auto& seg : source.segments()) again.push_back(seg.spec.iova);
    EXPECT_EQ(again, iovas);
    ASSERT_OK_AND_ASSIGN(int fd, source.BackingFd(iovas[1]));
    char buf[6] = {};
    ASSERT_EQ(pread(fd, buf, 5, 4096), 5);
    EXPECT_STREQ(buf, "lease");
    close(fd);
  }
  VfioSource fresh(Config(), &kernel_);
  ASSERT_OK(fresh.Start(/*keep_contents=*/false));
  ASSERT_OK_AND_ASSIGN(int fd, fresh.BackingFd(iovas[1]));
  char buf[6] = {};
  ASSERT_EQ(pread(fd, buf, 5, 4096), 5);
  EXPECT_EQ(buf[0], 0);
  close(fd);
}

// A restart that fails half way must not delete or zero the backing the
// store's leases live in: the next attempt re-attaches it intact.
TEST_F(VfioSourceTest, FailedReattachKeepsTheBacking) {
  uint64_t iova = 0;
  {
    VfioSource source(Config(), &kernel_);
    ASSERT_OK(source.Start());
    iova = source.segments().back().spec.iova;
    ASSERT_OK_AND_ASSIGN(int fd, source.BackingFd(iova));
    ASSERT_EQ(pwrite(fd, "kept", 4, 0), 4);
    close(fd);
  }
  int calls = 0;
  {
    FakeKernel k = kernel_;
    FaultyKernel counting(&k);
    VfioSource source(Config(), &counting);
    ASSERT_OK(source.Start(/*keep_contents=*/true));
    calls = counting.calls();
  }
  for (int n = 1; n <= calls; ++n) {
    FakeKernel k = kernel_;
    FaultyKernel faulty(&k);
    faulty.FailCall(n, EINVAL);
    VfioSource source(Config(), &faulty);
    ASSERT_FALSE(source.Start(/*keep_contents=*/true).ok()) << "call " << n;
    EXPECT_EQ(CountEntries(dir_ + "/backing"), 3) << "call " << n;
  }
  VfioSource source(Config(), &kernel_);
  ASSERT_OK(source.Start(/*keep_contents=*/true));
  ASSERT_OK_AND_ASSIGN(int fd, source.BackingFd(iova));
  char buf[5] = {};
  ASSERT_EQ(pread(fd, buf, 4, 0), 4);
  EXPECT_STREQ(buf, "kept");
  close(fd);
}

TEST_F(VfioSourceTest, HotAddAndRemoveMapWholePhyssegs) {
  VfioSource source(Config(), &kernel_);
  ASSERT_OK(source.Start());
  ASSERT_OK_AND_ASSIGN(BackedSegment low,
                       source.AddSegment(4 * kMiB, kLowFreelist, 0));
  EXPECT_LT(low.spec.iova + 4 * kMiB, kEduLimit + 1);
  ASSERT_OK_AND_ASSIGN(BackedSegment high, source.AddSegment(2 * kMiB, 0, 1));
  EXPECT_GE(high.spec.iova, kEduLimit);
  EXPECT_EQ(kernel_.mappings().size(), 5u);
  EXPECT_THAT(source.AddSegment(2 * kMiB, 7, 0).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(source.AddSegment(3 * kMiB, 0, 0).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(source.RemoveSegment(low.spec.iova));
  EXPECT_EQ(kernel_.mappings().count(low.spec.iova), 0u);
  EXPECT_EQ(source.segments().size(), 4u);
  EXPECT_EQ(CountEntries(dir_ + "/backing"), 4);
  EXPECT_THAT(source.RemoveSegment(low.spec.iova),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(VfioSourceTest, HotAddedSegmentIsRestoredAtTheSameIova) {
  BackedSegment added;
  {
    VfioSource source(Config(), &kernel_);
    ASSERT_OK(source.Start());
    ASSERT_OK_AND_ASSIGN(added, source.AddSegment(2 * kMiB, kLowFreelist, 0));
    ASSERT_OK_AND_ASSIGN(int fd, source.BackingFd(added.spec.iova));
    ASSERT_EQ(pwrite(fd, "added", 5, 0), 5);
    close(fd);
  }
  VfioSource source(Config(), &kernel_);
  ASSERT_OK(source.Start(/*keep_contents=*/true));
  ASSERT_OK_AND_ASSIGN(BackedSegment again,
                       source.RestoreSegment(added, /*keep_contents=*/true));
  EXPECT_EQ(again.spec.iova, added.spec.iova);
  EXPECT_EQ(again.path, added.path);
  EXPECT_EQ(kernel_.mappings().count(added.spec.iova), 1u);
  ASSERT_OK_AND_ASSIGN(int fd, source.BackingFd(added.spec.iova));
  char buf[6] = {};
  ASSERT_EQ(pread(fd, buf, 5, 0), 5);
  EXPECT_STREQ(buf, "added");
  close(fd);
  // Restoring on top of an existing segment is refused before its backing
  // is touched.
  for (bool keep : {true, false}) {
    EXPECT_THAT(source.RestoreSegment(added, keep).status(),
                StatusIs(absl::StatusCode::kFailedPrecondition));
  }
  ASSERT_OK_AND_ASSIGN(fd, source.BackingFd(added.spec.iova));
  ASSERT_EQ(pread(fd, buf, 5, 0), 5);
  EXPECT_STREQ(buf, "added");
  close(fd);
}

TEST_F(VfioSourceTest, HotAddFailureLeavesNothing) {
  FaultyKernel faulty(&kernel_);
  VfioSource source(Config(), &faulty);
  ASSERT_OK(source.Start());
  const int files = CountEntries(dir_ + "/backing");
  faulty.FailCall(faulty.calls() + 3, ENOMEM);  // memlock, backing, MAP_DMA
  EXPECT_THAT(source.AddSegment(2 * kMiB, 0, 0).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("VFIO_IOMMU_MAP_DMA")));
  EXPECT_EQ(kernel_.mappings().size(), 3u);
  EXPECT_EQ(CountEntries(dir_ + "/backing"), files);
  EXPECT_EQ(source.segments().size(), 3u);
}

}  // namespace
}  // namespace physpool::vfio

namespace physpool::vfio {
namespace {

// Per-lease views: a udmabuf over the runs of sealed memfds, back to back.
TEST_F(VfioSourceTest, ViewsAreUdmabufsOfTheRunsOverSealedMemfds) {
  VfioConfig c = Config();
  c.backing = BackingKind::kMemfd;
  c.layout.page_size = 4096;
  kernel_.udmabuf_info.list_limit = 2;
  kernel_.udmabuf_info.size_limit_mb = 1;
  VfioSource source(c, &kernel_);
  ASSERT_OK(source.Start());
  ASSERT_OK(source.ViewSupport());
  ASSERT_GE(source.segments().size(), 2u);
  const uint64_t a = source.segments()[0].spec.iova;
  const uint64_t b = source.segments()[1].spec.iova;
  absl::StatusOr<int> fd =
      source.CreateView("l-1", {{a + 8192, 4096}, {b, 8192}});
  ASSERT_OK(fd.status());
  close(*fd);
  ASSERT_EQ(kernel_.udmabufs().size(), 1u);
  const auto& ranges = kernel_.udmabufs()[0];
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].offset, 8192u);
  EXPECT_EQ(ranges[0].bytes, 4096u);
  EXPECT_EQ(ranges[1].offset, 0u);
  EXPECT_EQ(ranges[1].bytes, 8192u);
  EXPECT_NE(ranges[0].memfd, ranges[1].memfd);
  // The memfds are sealed as udmabuf requires (the fake checks it too).
  EXPECT_TRUE(fcntl(ranges[0].memfd, F_GET_SEALS) & F_SEAL_SHRINK);
  // Outside every segment; over the module's limits, naming them.
  EXPECT_THAT(source.CreateView("l-2", {{a - 4096, 4096}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      source.CreateView("l-3", {{a, 4096}, {a + 8192, 4096}, {b, 4096}}),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("list_limit")));
  EXPECT_THAT(source.CreateView("l-4", {{a, 2 << 20}}),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("size_limit_mb")));
}

TEST_F(VfioSourceTest, NoViewsWithFileBackingOrWithoutUdmabuf) {
  {
    VfioSource files(Config(), &kernel_);  // backing: file
    ASSERT_OK(files.Start());
    EXPECT_THAT(files.ViewSupport(),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("backing: memfd")));
    EXPECT_FALSE(files.CreateView("l-1", {}).ok());
  }
  kernel_.udmabuf_usable = absl::NotFoundError("open /dev/udmabuf: ENOENT");
  VfioConfig c = Config();
  c.backing = BackingKind::kMemfd;
  c.layout.page_size = 4096;
  VfioSource memfd(c, &kernel_);
  ASSERT_OK(memfd.Start());
  EXPECT_THAT(memfd.ViewSupport(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("/dev/udmabuf")));
}

// physpool-keeper's semantics in process (server/keeper_client.h): keeps
// duplicates, the fake kernel's VFIO descriptors through its Dup.
class TestStash : public FdStash {
 public:
  explicit TestStash(FakeKernel* k) : k_(k) {}
  ~TestStash() override {
    for (const auto& [name, fd] : kept_) Close(name, fd);
    for (const auto& [p, n] : mapped_) munmap(p, n);
  }
  std::string instance() const override { return "test"; }
  absl::Status Put(const std::string& name, int fd) override {
    if (kept_.count(name)) Close(name, kept_[name]);
    kept_[name] = Copy(name, fd);
    return absl::OkStatus();
  }
  absl::Status Drop(const std::string& name) override {
    if (auto it = kept_.find(name); it != kept_.end()) {
      Close(name, it->second);
      kept_.erase(it);
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::map<std::string, int>> List() override {
    std::map<std::string, int> out;
    for (const auto& [name, fd] : kept_) out[name] = Copy(name, fd);
    return out;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, fd] : kept_) out.push_back(name);
    return out;
  }
  // The keeper's MAP_DMA: from its own mapping of the memfd, as process
  // kKeeperMm, so that any later daemon (another mm) can unmap through it.
  static constexpr int kKeeperMm = 99;
  absl::Status MapDma(const std::string& container, const std::string& memfd,
                      uint64_t offset, uint64_t iova, uint64_t bytes) override {
    if (!kept_.count(container) || !kept_.count(memfd))
      return absl::NotFoundError("not kept");
    struct stat st;
    fstat(kept_[memfd], &st);
    void* p = mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   kept_[memfd], 0);
    if (p == MAP_FAILED) return absl::InternalError("mmap");
    mapped_.push_back({p, st.st_size});
    AsKeeper as(k_);
    absl::Status s = k_->MapDma(kept_[container],
                                static_cast<uint8_t*>(p) + offset, iova, bytes);
    if (s.ok()) maps_[container][iova] = bytes;
    return s;
  }
  absl::StatusOr<uint64_t> UnmapDma(const std::string& container, uint64_t iova,
                                    uint64_t bytes) override {
    if (!kept_.count(container)) return absl::NotFoundError("not kept");
    AsKeeper as(k_);
    absl::StatusOr<uint64_t> n = k_->UnmapDma(kept_[container], iova, bytes);
    auto& m = maps_[container];
    if (n.ok()) m.erase(m.lower_bound(iova), m.lower_bound(iova + bytes));
    return n;
  }
  absl::StatusOr<std::map<uint64_t, uint64_t>> Mappings(
      const std::string& container) override {
    return maps_[container];
  }

 private:
  struct AsKeeper {
    explicit AsKeeper(FakeKernel* k) : k(k), was(k->mm) { k->mm = kKeeperMm; }
    ~AsKeeper() { k->mm = was; }
    FakeKernel* k;
    int was;
  };
  static bool Fake(const std::string& name) {
    return name.rfind("container", 0) == 0 || name.rfind("group-", 0) == 0 ||
           name.rfind("device-", 0) == 0;
  }
  int Copy(const std::string& name, int fd) {
    return Fake(name) ? *k_->Dup(fd) : fcntl(fd, F_DUPFD_CLOEXEC, 0);
  }
  void Close(const std::string& name, int fd) {
    Fake(name) ? k_->Close(fd) : (void)close(fd);
  }
  FakeKernel* k_;
  std::map<std::string, int> kept_;
  std::map<std::string, std::map<uint64_t, uint64_t>> maps_;
  std::vector<std::pair<void*, size_t>> mapped_;
};

// With a keeper, a daemon that dies (the source is destroyed) unmaps
// nothing; the next one takes the container, the memory and the views
// back without a MAP_DMA, at the same IOVAs, bytes intact; a start that
// voids the leases drops all of it and starts fresh.
TEST_F(VfioSourceTest, AKeeperKeepsMemoryMappingsAndViewsAcrossARestart) {
  VfioConfig c = Config();
  c.backing = BackingKind::kMemfd;
  c.layout.page_size = 4096;
  TestStash stash(&kernel_);
  c.stash = &stash;
  std::vector<uint64_t> iovas;
  {
    VfioSource source(c, &kernel_);
    ASSERT_OK(source.Start());
    EXPECT_TRUE(source.persistent());
    for (const auto& seg : source.segments()) iovas.push_back(seg.spec.iova);
    ASSERT_OK_AND_ASSIGN(int fd, source.BackingFd(iovas[1] + 4096));
    ASSERT_EQ(pwrite(fd, "lease", 5, 4096), 5);
    close(fd);
    ASSERT_OK_AND_ASSIGN(int view,
                         source.CreateView("l-1", {{iovas[1], 8192}}));
    close(view);
  }
  EXPECT_EQ(kernel_.mappings().size(), iovas.size()) << "nothing unmapped";
  EXPECT_THAT(stash.names(), ::testing::IsSupersetOf(std::vector<std::string>{
                                 "container", "group-1", "group-2",
                                 absl::StrCat("device-", kEdu), "view-l-1"}));
  const int maps = kernel_.map_calls();
  {
    VfioSource source(c, &kernel_);
    ASSERT_OK(source.Start(/*keep_contents=*/true));
    EXPECT_EQ(kernel_.map_calls(), maps) << "no MAP_DMA: mapped all along";
    std::vector<uint64_t> again;
    for (const auto& seg : source.segments()) again.push_back(seg.spec.iova);
    EXPECT_EQ(again, iovas);
    ASSERT_OK_AND_ASSIGN(int fd, source.BackingFd(iovas[1]));
    char buf[6] = {};
    ASSERT_EQ(pread(fd, buf, 5, 4096), 5);
    EXPECT_STREQ(buf, "lease");
    close(fd);
    EXPECT_EQ(source.ViewNames(), std::vector<std::string>{"l-1"});
    ASSERT_OK_AND_ASSIGN(int view, source.OpenView("l-1"));
    close(view);
    EXPECT_TRUE(kernel_.bus_master(kEdu));
    source.DestroyView("l-1");
    EXPECT_THAT(source.OpenView("l-1"), StatusIs(absl::StatusCode::kNotFound));
  }
  EXPECT_THAT(stash.names(), ::testing::Not(::testing::Contains("view-l-1")));
  {
    VfioSource fresh(c, &kernel_);
    ASSERT_OK(fresh.Start(/*keep_contents=*/false));
    EXPECT_EQ(kernel_.map_calls(), maps + static_cast<int>(iovas.size()));
    ASSERT_OK_AND_ASSIGN(int fd, fresh.BackingFd(iovas[1]));
    char buf[6] = {};
    ASSERT_EQ(pread(fd, buf, 5, 4096), 5);
    EXPECT_EQ(buf[0], 0) << "void leases: fresh memory";
    close(fd);
  }
  // A keeper that lost the container while leases live: refused, saying so.
  ASSERT_OK(stash.Drop("container"));
  VfioSource broken(c, &kernel_);
  EXPECT_THAT(broken.Start(/*keep_contents=*/true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("holds no VFIO container")));
  // file backing with a keeper: refused (files persist by themselves).
  VfioConfig files = Config();
  files.stash = &stash;
  VfioSource with_files(files, &kernel_);
  EXPECT_THAT(with_files.Start(), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("backing: memfd")));
}

}  // namespace
}  // namespace physpool::vfio

// Device domains (docs/vfio.md, "Device domains"): tenant devices get a
// container of their group's own that maps their tenant's leases only.
namespace physpool::vfio {
namespace {

using Runs = std::vector<MemorySource::ViewRange>;
constexpr uint64_t kPage = 4096;

// `c` (the fixture's Config()) at 4 KiB pages, with kEdu (group 1) of
// tenant `edu` and 0000:00:03.0 (group 2) of tenant `dev3` ("" = pool-wide).
VfioConfig WithTenants(VfioConfig c, const std::string& edu,
                       const std::string& dev3) {
  c.layout.page_size = kPage;
  c.devices[0].tenant = edu;
  c.devices[1].tenant = dev3;
  return c;
}

DeviceDomain DomainOf(const VfioSource& s, const std::string& bdf) {
  for (const DeviceDomain& d : s.DeviceDomains())
    if (d.device.bdf == bdf) return d;
  ADD_FAILURE() << "no domain for " << bdf;
  return {};
}

uint64_t SegmentBytes(const VfioSource& s, const BackedSegment& seg) {
  return seg.spec.pages.value * s.page_size();
}

// Two physsegs where the first ends at the second's IOVA: {first, second}.
std::pair<uint64_t, uint64_t> AdjacentSegments(const VfioSource& s) {
  for (const BackedSegment& a : s.segments())
    for (const BackedSegment& b : s.segments())
      if (a.spec.iova + SegmentBytes(s, a) == b.spec.iova)
        return {a.spec.iova, b.spec.iova};
  ADD_FAILURE() << "no adjacent physsegs";
  return {0, 0};
}

// Writes `c` at `iova` through the backing fd (what tenants map).
void Poke(VfioSource& s, uint64_t seg_iova, uint64_t iova, char c) {
  ASSERT_OK_AND_ASSIGN(int fd, s.BackingFd(iova));
  ASSERT_EQ(pwrite(fd, &c, 1, off_t(iova - seg_iova)), 1);
  close(fd);
}

TEST_F(VfioSourceTest, TenantDevicesGetContainersOfTheirOwn) {
  VfioSource source(WithTenants(Config(), "a", "b"), &kernel_);
  ASSERT_OK(source.Start());
  ASSERT_EQ(source.segments().size(), 3u);
  EXPECT_EQ(kernel_.containers(), 2) << "one per tenant group, no pool one";
  EXPECT_TRUE(kernel_.mappings().empty()) << "no whole physseg mapped";
  EXPECT_EQ(kernel_.map_calls(), 0);
  EXPECT_TRUE(source.HasDevices("a"));
  EXPECT_TRUE(source.HasDevices("b"));
  EXPECT_FALSE(source.HasDevices("c"));
  EXPECT_FALSE(source.HasDevices(""));

  const uint64_t seg = source.segments()[1].spec.iova;
  const uint64_t iova = seg + 8 * kPage;
  const Runs lease = {{iova, 2 * kPage}};
  ASSERT_OK(source.MapLease("a", lease));
  const auto a = kernel_.mappings_of(1);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a.begin()->first, iova) << "same IOVA as in the pool";
  EXPECT_EQ(a.begin()->second.bytes, 2 * kPage);
  EXPECT_TRUE(kernel_.mappings_of(2).empty()) << "tenant b reaches nothing";
  // The device reaches the lease's memory.
  Poke(source, seg, iova, 'a');
  EXPECT_EQ(*static_cast<const char*>(a.begin()->second.vaddr), 'a');

  ASSERT_OK(source.MapLease("c", lease));  // no devices: nothing to map
  EXPECT_EQ(kernel_.mappings().size(), 1u);
  EXPECT_EQ(kernel_.map_calls(), 1);

  ASSERT_OK(source.UnmapLease("a", lease));
  EXPECT_TRUE(kernel_.mappings().empty());
  ASSERT_OK(source.UnmapLease("a", lease));  // idempotent
  ASSERT_OK(source.UnmapLease("c", lease));
}

TEST_F(VfioSourceTest, ARunAcrossTwoPhyssegsIsOneMappingPerSegment) {
  VfioSource source(WithTenants(Config(), "a", "b"), &kernel_);
  ASSERT_OK(source.Start());
  const auto [lo, hi] = AdjacentSegments(source);
  ASSERT_NE(hi, 0u);
  const Runs lease = {{hi - 2 * kPage, 4 * kPage}};
  ASSERT_OK(source.MapLease("a", lease));
  const auto m = kernel_.mappings_of(1);
  ASSERT_EQ(m.size(), 2u);
  ASSERT_EQ(m.count(hi - 2 * kPage), 1u);
  ASSERT_EQ(m.count(hi), 1u);
  EXPECT_EQ(m.at(hi - 2 * kPage).bytes, 2 * kPage);
  EXPECT_EQ(m.at(hi).bytes, 2 * kPage);
  // Each piece onto its own physseg's memory.
  Poke(source, lo, hi - 2 * kPage, 'L');
  Poke(source, hi, hi, 'H');
  EXPECT_EQ(*static_cast<const char*>(m.at(hi - 2 * kPage).vaddr), 'L');
  EXPECT_EQ(*static_cast<const char*>(m.at(hi).vaddr), 'H');
  EXPECT_EQ(DomainOf(source, kEdu).mappings, 2u);
  EXPECT_EQ(DomainOf(source, kEdu).mapped_bytes, 4 * kPage);
  ASSERT_OK(source.UnmapLease("a", lease));
  EXPECT_TRUE(kernel_.mappings_of(1).empty());
}

// A fault at each MAP_DMA of a grant into two domains in turn: the grant
// fails with the kernel's errno and nothing of it stays mapped anywhere.
TEST_F(VfioSourceTest, AGrantThatFailsHalfWayLeavesNothingMapped) {
  FaultyKernel faulty(&kernel_);
  VfioSource source(WithTenants(Config(), "a", "a"), &faulty);
  ASSERT_OK(source.Start());
  const auto [lo, hi] = AdjacentSegments(source);
  ASSERT_NE(hi, 0u);
  const Runs lease = {{lo, kPage}, {hi - kPage, 2 * kPage}};  // 3 pieces
  const int64_t avail = DomainOf(source, kEdu).dma_avail;
  ASSERT_GT(avail, 0);
  int before = faulty.calls();
  ASSERT_OK(source.MapLease("a", lease));
  const int map_calls = faulty.calls() - before;
  ASSERT_EQ(map_calls, 6) << "3 pieces in 2 domains";
  ASSERT_EQ(kernel_.mappings_of(1).size(), 3u);
  ASSERT_EQ(kernel_.mappings_of(2).size(), 3u);
  ASSERT_OK(source.UnmapLease("a", lease));
  for (int err : {ENOMEM, ENOSPC, EINVAL}) {
    for (int n = 1; n <= map_calls; ++n) {
      faulty.FailCall(faulty.calls() + n, err);
      absl::Status s = source.MapLease("a", lease);
      ASSERT_FALSE(s.ok()) << "call " << n;
      EXPECT_EQ(ErrnoOf(s), err) << s;
      EXPECT_EQ(faulty.failed_step(), "VFIO_IOMMU_MAP_DMA") << s;
      EXPECT_THAT(std::string(s.message()), HasSubstr("tenant \"a\""));
      EXPECT_TRUE(kernel_.mappings_of(1).empty()) << "call " << n << ": " << s;
      EXPECT_TRUE(kernel_.mappings_of(2).empty()) << "call " << n << ": " << s;
      for (const DeviceDomain& d : source.DeviceDomains()) {
        EXPECT_EQ(d.mappings, 0u) << d.device.bdf << " call " << n;
        EXPECT_EQ(d.mapped_bytes, 0u) << d.device.bdf << " call " << n;
        EXPECT_EQ(d.dma_avail, avail) << d.device.bdf << " call " << n;
      }
    }
  }
  faulty.FailCall(0, 0);
  ASSERT_OK(source.MapLease("a", lease));  // the bookkeeping is intact
  EXPECT_EQ(kernel_.mappings_of(1).size(), 3u);
  EXPECT_EQ(kernel_.mappings_of(2).size(), 3u);
}

TEST_F(VfioSourceTest, AGrantOverTheDmaEntryLimitIsRefusedUpFront) {
  kernel_.dma_limit = 3;
  VfioSource source(WithTenants(Config(), "a", "b"), &kernel_);
  ASSERT_OK(source.Start());
  EXPECT_EQ(DomainOf(source, kEdu).dma_avail, 3);
  const uint64_t seg = source.segments()[1].spec.iova;
  Runs four;
  for (int i = 0; i < 4; ++i) four.push_back({seg + 2 * i * kPage, kPage});
  EXPECT_THAT(source.MapLease("a", four),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("dma_entry_limit"), HasSubstr("group 1"),
                             HasSubstr("3 left"))));
  EXPECT_EQ(kernel_.map_calls(), 0) << "refused before any MAP_DMA";
  EXPECT_TRUE(kernel_.mappings().empty());
  const Runs three(four.begin(), four.begin() + 3);
  ASSERT_OK(source.MapLease("a", three));
  EXPECT_EQ(kernel_.mappings_of(1).size(), 3u);
  EXPECT_EQ(DomainOf(source, kEdu).dma_avail, 0);
  EXPECT_EQ(DomainOf(source, "0000:00:03.0").dma_avail, 3) << "its own count";
  EXPECT_THAT(source.MapLease("a", {four[3]}),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("dma_entry_limit")));
  EXPECT_EQ(kernel_.map_calls(), 3);
  ASSERT_OK(source.UnmapLease("a", three));
  EXPECT_EQ(DomainOf(source, kEdu).dma_avail, 3);
}

// Each domain pins what it maps, on top of the pool's container.
TEST_F(VfioSourceTest, AGrantOverRlimitMemlockIsRefusedUpFront) {
  kernel_.memlock = {false, 13 * kMiB};  // the pool's 12 MiB and 1 MiB more
  VfioSource source(WithTenants(Config(), "", "b"), &kernel_);
  ASSERT_OK(source.Start());
  const int maps = kernel_.map_calls();
  const uint64_t seg = source.segments()[1].spec.iova;
  EXPECT_THAT(
      source.MapLease("b", {{seg, 2 * kMiB}}),
      StatusIs(absl::StatusCode::kResourceExhausted,
               AllOf(HasSubstr("RLIMIT_MEMLOCK"), HasSubstr("CAP_IPC_LOCK"))));
  EXPECT_EQ(kernel_.map_calls(), maps) << "refused before any MAP_DMA";
  EXPECT_TRUE(kernel_.mappings_of(2).empty());
  ASSERT_OK(source.MapLease("b", {{seg, kMiB}}));  // exactly the limit
  EXPECT_EQ(kernel_.mappings_of(2).size(), 1u);
  EXPECT_THAT(source.MapLease("b", {{seg + kMiB, kPage}}),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("RLIMIT_MEMLOCK")));
  EXPECT_EQ(kernel_.mappings_of(2).size(), 1u);
}

TEST_F(VfioSourceTest, EachTenantDomainPinsTheLeaseAgainstRlimitMemlock) {
  kernel_.memlock = {false, 12 * kMiB};  // Start checks the pool's 12 MiB
  VfioSource source(WithTenants(Config(), "a", "a"), &kernel_);
  ASSERT_OK(source.Start());
  const auto [lo, hi] = AdjacentSegments(source);
  ASSERT_NE(hi, 0u);
  // 7 MiB fits the limit once, not in two domains.
  EXPECT_THAT(source.MapLease("a", {{lo, 7 * kMiB}}),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("RLIMIT_MEMLOCK")));
  EXPECT_EQ(kernel_.map_calls(), 0);
  EXPECT_TRUE(kernel_.mappings().empty());
  ASSERT_OK(source.MapLease("a", {{lo, 6 * kMiB}}));  // 2 x 6 MiB
  EXPECT_EQ(kernel_.mappings_of(1).size(), 2u);
  EXPECT_EQ(kernel_.mappings_of(2).size(), 2u);
}

TEST_F(VfioSourceTest, DevicesOfOneGroupMustShareTheirTenant) {
  for (const auto& [t1, t2] : std::vector<std::pair<std::string, std::string>>{
           {"a", "b"}, {"", "a"}, {"a", ""}}) {
    VfioConfig c = Config();
    c.devices = {{kEdu, kEduLimit, t1}, {"0000:00:02.0", 0, t2}};  // group 1
    {
      VfioSource source(c, &kernel_);
      EXPECT_THAT(source.Start(),
                  StatusIs(absl::StatusCode::kFailedPrecondition,
                           AllOf(HasSubstr("IOMMU group 1"),
                                 HasSubstr("0000:00:02.0"))))
          << "\"" << t1 << "\" vs \"" << t2 << "\"";
      EXPECT_EQ(kernel_.open_fds(), 0) << "nothing left open";
      EXPECT_EQ(kernel_.containers(), 0);
      EXPECT_TRUE(kernel_.mappings().empty());
    }
    EXPECT_EQ(kernel_.open_fds(), 0);
  }
  // One tenant for both: one domain, which both devices show.
  VfioConfig c = WithTenants(Config(), "a", "a");
  c.devices = {{kEdu, kEduLimit, "a"}, {"0000:00:02.0", 0, "a"}};
  VfioSource source(c, &kernel_);
  ASSERT_OK(source.Start());
  ASSERT_OK(source.MapLease("a", {{source.segments()[0].spec.iova, kPage}}));
  EXPECT_EQ(kernel_.map_calls(), 1);
  EXPECT_EQ(kernel_.mappings_of(1).size(), 1u);
  EXPECT_EQ(DomainOf(source, kEdu).domain, "group-1");
  EXPECT_EQ(DomainOf(source, "0000:00:02.0").domain, "group-1");
  EXPECT_EQ(DomainOf(source, "0000:00:02.0").mappings, 1u);
}

// With a keeper, tenant domains are its mappings (made as the keeper's
// mm): a daemon that dies leaves them; the next one (another mm) makes
// them exactly the live leases', unmapping the ended ones' through the
// keeper and mapping what is missing.
TEST_F(VfioSourceTest, ReconcileAfterARestartWithAKeeperFixesTenantDomains) {
  TestStash stash(&kernel_);
  VfioConfig c = WithTenants(Config(), "a", "");  // group 2: pool-wide
  c.backing = BackingKind::kMemfd;
  c.stash = &stash;
  uint64_t seg = 0;
  size_t segments = 0;
  {
    VfioSource source(c, &kernel_);
    ASSERT_OK(source.Start());
    seg = source.segments()[0].spec.iova;
    segments = source.segments().size();
    ASSERT_OK(source.MapLease("a", {{seg, 2 * kPage}}));          // L1
    ASSERT_OK(source.MapLease("a", {{seg + 4 * kPage, kPage}}));  // L2
  }  // kill -9: nothing unmapped
  const Runs l1 = {{seg, 2 * kPage}}, l2 = {{seg + 4 * kPage, kPage}};
  ASSERT_EQ(kernel_.mappings_of(1).size(), 2u);
  EXPECT_THAT(stash.names(), ::testing::Contains("container-1"));
  kernel_.mm = 2;  // the next daemon
  {
    VfioSource source(c, &kernel_);
    ASSERT_OK(source.Start(/*keep_contents=*/true));
    ASSERT_OK_AND_ASSIGN(MemorySource::Reconciled r,
                         source.Reconcile({{"a", l1}}));
    EXPECT_EQ(r.unmapped, 1u);
    EXPECT_EQ(r.kept, 1u);
    EXPECT_EQ(r.mapped, 0u);
    EXPECT_EQ(r.map_errors, 0u);
    auto m = kernel_.mappings_of(1);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(m.begin()->first, seg);
    EXPECT_EQ(m.begin()->second.bytes, 2 * kPage);
    EXPECT_EQ(kernel_.mappings_of(2).size(), segments) << "pool untouched";
    EXPECT_EQ(DomainOf(source, kEdu).mappings, 1u);
    EXPECT_EQ(DomainOf(source, kEdu).mapped_bytes, 2 * kPage);
    // A mapping of the dead daemon's time, undone by this one: through
    // the keeper that made it.
    ASSERT_OK(source.UnmapLease("a", l1));
    EXPECT_TRUE(kernel_.mappings_of(1).empty());
    EXPECT_EQ(DomainOf(source, kEdu).mappings, 0u);
  }
  kernel_.mm = 3;
  VfioSource source(c, &kernel_);
  ASSERT_OK(source.Start(/*keep_contents=*/true));
  ASSERT_OK_AND_ASSIGN(MemorySource::Reconciled r,
                       source.Reconcile({{"a", l1}, {"a", l2}, {"z", l2}}));
  EXPECT_EQ(r.mapped, 2u) << "live leases that were not mapped";
  EXPECT_EQ(r.kept, 0u);
  EXPECT_EQ(r.unmapped, 0u);
  auto m = kernel_.mappings_of(1);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m.at(seg).bytes, 2 * kPage);
  EXPECT_EQ(m.at(seg + 4 * kPage).bytes, kPage);
  for (const auto& [iova, mapping] : m)
    EXPECT_EQ(mapping.mm, TestStash::kKeeperMm) << "mapped by the keeper";
  EXPECT_EQ(DomainOf(source, kEdu).mappings, 2u);
}

// Without a keeper, type1 lets only the mm that mapped unmap: an UNMAP
// the kernel cuts short is an error, and the mapping stays recorded.
TEST_F(VfioSourceTest, AnUnmapTheKernelCutsShortIsAnError) {
  VfioSource source(WithTenants(Config(), "a", "b"), &kernel_);
  ASSERT_OK(source.Start());
  const Runs lease = {{source.segments()[0].spec.iova, 2 * kPage}};
  ASSERT_OK(source.MapLease("a", lease));
  kernel_.mm = 2;
  EXPECT_THAT(source.UnmapLease("a", lease),
              StatusIs(absl::StatusCode::kInternal,
                       AllOf(HasSubstr("unmapped"),
                             HasSubstr("VFIO_IOMMU_UNMAP_DMA"))));
  EXPECT_EQ(kernel_.mappings_of(1).size(), 1u) << "still reachable";
  EXPECT_EQ(DomainOf(source, kEdu).mappings, 1u);
  EXPECT_EQ(DomainOf(source, kEdu).mapped_bytes, 2 * kPage);
  kernel_.mm = 1;  // a retry by the mm that mapped it
  ASSERT_OK(source.UnmapLease("a", lease));
  EXPECT_TRUE(kernel_.mappings_of(1).empty());
  EXPECT_EQ(DomainOf(source, kEdu).mappings, 0u);
}

TEST_F(VfioSourceTest, DeviceDomainsShowThePoolAndEachTenantDomain) {
  VfioSource source(WithTenants(Config(), "", "b"), &kernel_);
  ASSERT_OK(source.Start());
  const uint64_t s1 = source.segments()[1].spec.iova;
  const uint64_t s2 = source.segments()[2].spec.iova;
  ASSERT_OK(source.MapLease("b", {{s1, 3 * kPage}, {s2 + kPage, kPage}}));
  const std::vector<DeviceDomain> all = source.DeviceDomains();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].device.bdf, kEdu);
  EXPECT_EQ(all[0].device.tenant, "");
  EXPECT_EQ(all[0].domain, "pool");
  EXPECT_EQ(all[0].mappings, source.segments().size());
  EXPECT_EQ(all[0].mappings, kernel_.mappings_of(1).size());
  EXPECT_EQ(all[0].mapped_bytes, 12 * kMiB);
  EXPECT_EQ(all[0].dma_avail, 65535 - 3);
  EXPECT_EQ(all[1].device.bdf, "0000:00:03.0");
  EXPECT_EQ(all[1].device.tenant, "b");
  EXPECT_EQ(all[1].domain, "group-2");
  EXPECT_EQ(all[1].mappings, 2u);
  EXPECT_EQ(all[1].mappings, kernel_.mappings_of(2).size());
  EXPECT_EQ(all[1].mapped_bytes, 4 * kPage);
  EXPECT_EQ(all[1].dma_avail, 65535 - 2);
}

// Two devices of one tenant in one group share a domain, also when a
// restarted daemon takes it back from the keeper.
TEST_F(VfioSourceTest, ADomainOfTwoDevicesIsTakenBackWhole) {
  TestStash stash(&kernel_);
  VfioConfig c = WithTenants(Config(), "a", "");
  c.devices = {{kEdu, kEduLimit, "a"},
               {"0000:00:02.0", 0, "a"},
               {"0000:00:03.0", 0, ""}};
  c.backing = BackingKind::kMemfd;
  c.stash = &stash;
  uint64_t seg = 0;
  {
    VfioSource source(c, &kernel_);
    ASSERT_OK(source.Start());
    seg = source.segments()[0].spec.iova;
    ASSERT_OK(source.MapLease("a", {{seg, kPage}}));
  }
  kernel_.mm = 2;
  VfioSource source(c, &kernel_);
  ASSERT_OK(source.Start(/*keep_contents=*/true));
  ASSERT_OK_AND_ASSIGN(MemorySource::Reconciled r,
                       source.Reconcile({{"a", {{seg, kPage}}}}));
  EXPECT_EQ(r.kept, 1u);
  EXPECT_EQ(DomainOf(source, "0000:00:02.0").domain, "group-1");
  EXPECT_EQ(DomainOf(source, "0000:00:02.0").mappings, 1u);
  ASSERT_OK(source.MapLease("a", {{seg + 8 * kPage, kPage}}));
  EXPECT_EQ(kernel_.mappings_of(1).size(), 2u);
}

}  // namespace
}  // namespace physpool::vfio
