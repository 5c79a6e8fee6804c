// SPDX-License-Identifier: Apache-2.0
// PoolManager on an injected clock and a real sim source: expiry, warnings,
// renewal and waiting deadlines follow the clock, not the wall.
#include "server/pool_manager.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/core/fake_clock.h"
#include "vfio/sim_source.h"

namespace physpool::server {
namespace {

class PoolManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/physpool-mgr-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    vfio::SimConfig sim;
    sim.dir = dir_;
    sim.segments = {{4 << 20, 0, 0}};
    source_ = std::make_unique<vfio::SimSource>(sim);
    ASSERT_OK(source_->Start());
    Tenant a;
    a.name = "a";
    tenants_ = std::make_unique<TenantRegistry>(std::vector<Tenant>{a});
    ManagerOptions o;
    o.default_ttl = absl::Seconds(10);
    o.expiring_warning = absl::Seconds(2);
    manager_ = std::make_unique<PoolManager>(o, source_.get(), &clock_,
                                             tenants_.get());
    ASSERT_OK(manager_->Start());
    (void)manager_->Subscribe("a", [this](const LeaseEventInfo& e) {
      absl::MutexLock l(&mu_);
      events_.push_back(e.kind);
    });
    tenant_ = *tenants_->ByName("a");
  }
  void TearDown() override {
    manager_.reset();
    source_.reset();
    std::system(("rm -rf " + dir_).c_str());
  }

  absl::StatusOr<LeaseInfo> Allocate(
      uint64_t bytes, bool wait = false,
      absl::Duration deadline = absl::Seconds(60)) {
    return AllocateOn(*manager_, bytes, wait, deadline);
  }
  // The same on another manager.
  absl::StatusOr<LeaseInfo> AllocateOn(
      PoolManager& m, uint64_t bytes, bool wait = false,
      absl::Duration deadline = absl::Seconds(60)) {
    AllocateParams p;
    p.req.bytes = bytes;
    p.may_wait = wait;
    return AllocateAs(m, tenant_, p, deadline);
  }
  // Any request of any tenant, waiting for its answer.
  absl::StatusOr<LeaseInfo> AllocateAs(
      PoolManager& m, const Tenant& t, const AllocateParams& p,
      absl::Duration deadline = absl::Seconds(60)) {
    absl::Mutex mu;
    std::optional<absl::StatusOr<LeaseInfo>> result;
    m.Allocate(t, p, clock_.Now() + deadline, [&](absl::StatusOr<LeaseInfo> r) {
      absl::MutexLock l(&mu);
      result = std::move(r);
    });
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(
        +[](std::optional<absl::StatusOr<LeaseInfo>>* r) {
          return r->has_value();
        },
        &result));
    return std::move(*result);
  }
  // Waits (wall time, bounded) until `n` events have been seen.
  std::vector<LeaseEventInfo::Kind> Events(size_t n) {
    for (int i = 0; i < 500; ++i) {
      {
        absl::MutexLock l(&mu_);
        if (events_.size() >= n) return events_;
      }
      manager_->Wake();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    absl::MutexLock l(&mu_);
    return events_;
  }
  uint64_t UsedBytes() {
    uint64_t used = 0;
    for (const auto& s : manager_->Segments())
      used += s.info.used_pages.value * 4096;
    return used;
  }

  std::string dir_;
  FakeClock clock_;
  std::unique_ptr<vfio::SimSource> source_;
  std::unique_ptr<TenantRegistry> tenants_;
  std::unique_ptr<PoolManager> manager_;
  Tenant tenant_;
  absl::Mutex mu_;
  std::vector<LeaseEventInfo::Kind> events_;
};

using Kind = LeaseEventInfo::Kind;

TEST_F(PoolManagerTest, LeasesExpireOnTheInjectedClock) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo lease, Allocate(1 << 20));
  EXPECT_EQ(lease.expires, clock_.Now() + absl::Seconds(10));
  // Real time passes, the injected clock does not: nothing happens.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  manager_->Wake();
  EXPECT_TRUE(Events(0).empty());
  clock_.Advance(absl::Seconds(8));  // 2 s before expiry
  EXPECT_EQ(Events(1), std::vector<Kind>{Kind::kExpiring});
  // Renewal pushes expiry out from the clock's now.
  ASSERT_OK_AND_ASSIGN(LeaseInfo renewed,
                       manager_->Renew(tenant_, lease.id, absl::Seconds(10)));
  EXPECT_EQ(renewed.expires, clock_.Now() + absl::Seconds(10));
  clock_.Advance(absl::Seconds(9));
  EXPECT_EQ(Events(2), (std::vector<Kind>{Kind::kExpiring, Kind::kExpiring}));
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Events(3), (std::vector<Kind>{Kind::kExpiring, Kind::kExpiring,
                                          Kind::kExpired}));
  EXPECT_FALSE(manager_->Get(tenant_, lease.id).ok());
  // The memory comes back once zeroed.
  for (int i = 0; i < 500 && UsedBytes() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(UsedBytes(), 0u);
}

// A lease access token (AllocateRequest.access_token_sha256): its holder
// reaches the leases granted with it, and only while one lives.
TEST_F(PoolManagerTest, AnAccessTokenReachesOnlyTheLeasesGrantedWithIt) {
  const std::string sha = Sha256Hex("claim-token");
  // Without per-lease views a backing fd reaches other leases: refused.
  AllocateParams p;
  p.req.bytes = 4096;
  p.access_sha256 = sha;
  {
    ManagerOptions off;
    off.per_lease_views = false;
    PoolManager m(off, source_.get(), &clock_, tenants_.get());
    ASSERT_OK(m.Start());
    EXPECT_THAT(
        AllocateAs(m, tenant_, p).status(),
        physpool::testing::StatusIs(absl::StatusCode::kFailedPrecondition));
  }
  PoolManager& m = *manager_;  // per-lease views (the default)
  auto allocate = [&](const Tenant& t, const std::string& access) {
    p.access_sha256 = access;
    return AllocateAs(m, t, p);
  };
  EXPECT_EQ(m.TenantOfAccessToken(sha), std::nullopt);
  ASSERT_OK_AND_ASSIGN(LeaseInfo one, allocate(tenant_, sha));
  ASSERT_OK_AND_ASSIGN(LeaseInfo two, allocate(tenant_, sha));
  ASSERT_OK_AND_ASSIGN(LeaseInfo plain, allocate(tenant_, ""));
  EXPECT_EQ(one.access_sha256, sha);
  EXPECT_EQ(m.TenantOfAccessToken(sha), "a");
  Tenant holder = tenant_;
  holder.lease_scope = sha;
  EXPECT_OK(m.Get(holder, one.id).status());
  EXPECT_OK(m.Get(holder, two.id).status());
  EXPECT_THAT(m.Get(holder, plain.id).status(),
              physpool::testing::StatusIs(absl::StatusCode::kPermissionDenied));
  Tenant other_token = tenant_;
  other_token.lease_scope = Sha256Hex("another");
  EXPECT_THAT(m.Get(other_token, one.id).status(),
              physpool::testing::StatusIs(absl::StatusCode::kPermissionDenied));
  // Another tenant may not reuse the hash (it would name the wrong owner).
  Tenant b;
  b.name = "b";
  EXPECT_THAT(allocate(b, sha).status(),
              physpool::testing::StatusIs(absl::StatusCode::kInvalidArgument));
  // The token lives as long as one of its leases; of ended leases it
  // learns nothing (not how they ended).
  ASSERT_OK(m.Release(tenant_, one.id).status());
  EXPECT_EQ(m.TenantOfAccessToken(sha), "a");
  EXPECT_THAT(m.Get(holder, one.id).status(),
              physpool::testing::StatusIs(absl::StatusCode::kNotFound,
                                          "no lease " + one.id));
  ASSERT_OK(m.Release(tenant_, two.id).status());
  EXPECT_EQ(m.TenantOfAccessToken(sha), std::nullopt);
}

// Any caller can present a token: looking it up must not take the pool's
// lock. Asked from an event sink, which runs under that lock, a lookup that
// took it would deadlock.
TEST_F(PoolManagerTest, AnAccessTokenLookupNeverTakesThePoolsLock) {
  const std::string sha = Sha256Hex("claim-token");
  AllocateParams p;
  p.req.bytes = 4096;
  p.access_sha256 = sha;
  ASSERT_OK_AND_ASSIGN(LeaseInfo lease, AllocateAs(*manager_, tenant_, p));
  std::optional<std::string> gone = "not asked";
  bool asked = false;
  ASSERT_OK(manager_
                ->Subscribe("a",
                            [&](const LeaseEventInfo&) {
                              asked = true;
                              (void)manager_->TenantOfAccessToken(sha);
                              gone = manager_->TenantOfAccessToken(
                                  Sha256Hex("unknown"));
                            })
                .status());
  ASSERT_OK(manager_->Revoke(lease.id, "test").status());
  EXPECT_TRUE(asked);
  EXPECT_EQ(gone, std::nullopt);
}

TEST_F(PoolManagerTest, WaitDeadlinesFollowTheInjectedClock) {
  ASSERT_OK(Allocate(4 << 20).status());
  std::optional<absl::Status> result;
  absl::Mutex mu;
  AllocateParams p;
  p.req.bytes = 4096;
  p.may_wait = true;
  manager_->Allocate(tenant_, p, clock_.Now() + absl::Seconds(5),
                     [&](absl::StatusOr<LeaseInfo> r) {
                       absl::MutexLock l(&mu);
                       result = r.status();
                     });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  manager_->Wake();
  {
    absl::MutexLock l(&mu);
    EXPECT_FALSE(result.has_value());  // still waiting: no injected time passed
  }
  clock_.Advance(absl::Seconds(6));
  for (int i = 0; i < 500; ++i) {
    manager_->Wake();
    absl::MutexLock l(&mu);
    if (result) break;
    mu.Unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    mu.Lock();
  }
  absl::MutexLock l(&mu);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(PoolManagerTest, ReleasedMemoryIsZeroedBeforeReuse) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo lease, Allocate(4 << 20));
  const LeaseRun& run = lease.runs.at(0);
  const int fd = open(run.backing_path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  auto* p =
      static_cast<uint8_t*>(mmap(nullptr, run.bytes, PROT_READ | PROT_WRITE,
                                 MAP_SHARED, fd, run.backing_offset));
  ASSERT_NE(p, MAP_FAILED);
  std::memset(p, 0x5a, run.bytes);
  ASSERT_OK(manager_->Release(tenant_, lease.id).status());
  ASSERT_OK_AND_ASSIGN(LeaseInfo again, Allocate(4 << 20, /*wait=*/true));
  EXPECT_EQ(again.runs.at(0).iova, run.iova);
  size_t nonzero = 0;
  for (uint64_t i = 0; i < run.bytes; ++i) nonzero += p[i] != 0;
  EXPECT_EQ(nonzero, 0u);
  munmap(p, run.bytes);
  close(fd);
}

// A sim source whose zeroing fails the first `failures` times.
class FlakyZeroSource final : public vfio::MemorySource {
 public:
  FlakyZeroSource(vfio::MemorySource* real, int failures)
      : real_(real), failures_(failures) {}
  std::string name() const override { return real_->name(); }
  uint64_t page_size() const override { return real_->page_size(); }
  absl::Status Start(bool keep) override { return real_->Start(keep); }
  std::string Layout() const override { return real_->Layout(); }
  bool persistent() const override { return real_->persistent(); }
  const std::vector<vfio::BackedSegment>& segments() const override {
    return real_->segments();
  }
  absl::StatusOr<vfio::BackedSegment> AddSegment(uint64_t b, uint32_t f,
                                                 int32_t n) override {
    return real_->AddSegment(b, f, n);
  }
  absl::StatusOr<vfio::BackedSegment> RestoreSegment(
      const vfio::BackedSegment& s, bool keep) override {
    return real_->RestoreSegment(s, keep);
  }
  absl::Status RemoveSegment(uint64_t iova) override {
    return real_->RemoveSegment(iova);
  }
  absl::StatusOr<int> BackingFd(uint64_t iova) override {
    return real_->BackingFd(iova);
  }
  absl::Status Zero(uint64_t iova, uint64_t bytes) override {
    if (failures_.fetch_sub(1) > 0)
      return absl::InternalError("injected: zeroing failed");
    return real_->Zero(iova, bytes);
  }
  int failures_left() const { return failures_.load(); }

 private:
  vfio::MemorySource* real_;
  std::atomic<int> failures_;
};

// Issue 11, defect 11: memory whose zeroing failed went back to the pool.
// It must stay out, counted, until zeroing succeeds.
TEST_F(PoolManagerTest, MemoryThatCouldNotBeZeroedStaysOutOfThePool) {
  FlakyZeroSource flaky(source_.get(), 3);
  ManagerOptions o;
  o.scrub_retry = absl::Milliseconds(100);
  PoolManager m(o, &flaky, &clock_, tenants_.get());
  ASSERT_OK(m.Start());
  AllocateParams p;
  p.req.bytes = 4 << 20;
  absl::StatusOr<LeaseInfo> lease = AllocateOn(m, 4 << 20);
  ASSERT_OK(lease.status());
  ASSERT_OK(m.Release(tenant_, lease->id).status());
  // While zeroing fails the pages are not free, and the failure shows.
  bool seen_failed = false;
  for (int i = 0; i < 200 && !seen_failed; ++i) {
    const ManagerStats st = m.Stats();
    EXPECT_EQ(st.segments.at(0).info.free_pages.value, 0u);
    seen_failed = st.scrub_failed_pages == 1024 && st.scrub_errors >= 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(seen_failed);
  // A request for the memory does not get it meanwhile.
  absl::Notification refused;
  m.Allocate(tenant_, p, clock_.Now() + absl::Seconds(10),
             [&](absl::StatusOr<LeaseInfo> r) {
               EXPECT_EQ(r.status().code(),
                         absl::StatusCode::kResourceExhausted);
               refused.Notify();
             });
  refused.WaitForNotification();
  // Once zeroing succeeds (the fourth try), the memory comes back.
  bool freed = false;
  for (int i = 0; i < 500 && !freed; ++i) {
    const ManagerStats st = m.Stats();
    freed = st.segments.at(0).info.free_pages.value == 1024 &&
            st.scrub_failed_pages == 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(freed);
  EXPECT_EQ(m.Stats().scrub_errors, 3u);
  EXPECT_LE(flaky.failures_left(), 0);
}

// A small lease no view reaches is zeroed inside its end's change: when
// Release answers, its memory is zero and free already (no scrub backlog).
// If that zeroing fails, the scrubber takes over and the memory stays out
// until it succeeds.
TEST_F(PoolManagerTest, ASmallReleasedLeaseIsZeroAndFreeWhenReleaseAnswers) {
  for (const int failures : {0, 1}) {
    SCOPED_TRACE(failures);
    FlakyZeroSource flaky(source_.get(), failures);
    ManagerOptions o;
    o.scrub_retry = absl::Milliseconds(50);
    PoolManager m(o, &flaky, &clock_, tenants_.get());
    ASSERT_OK(m.Start());
    const uint64_t total = m.Stats().segments.at(0).info.free_pages.value;
    absl::StatusOr<LeaseInfo> lease = AllocateOn(m, 64 << 10);
    ASSERT_OK(lease.status());
    const uint64_t iova = lease->runs.at(0).iova;
    auto fd = source_->BackingFd(iova);
    ASSERT_OK(fd.status());
    const off_t off = static_cast<off_t>(lease->runs.at(0).backing_offset);
    const std::string junk(64 << 10, 'x');
    ASSERT_EQ(pwrite(*fd, junk.data(), junk.size(), off),
              static_cast<ssize_t>(junk.size()));
    ASSERT_OK(m.Release(tenant_, lease->id).status());
    struct Closer {
      int fd;
      ~Closer() { close(fd); }
    } closer{*fd};
    if (failures == 0) {
      const ManagerStats st = m.Stats();
      EXPECT_EQ(st.segments.at(0).info.free_pages.value, total);
      EXPECT_EQ(st.scrub_backlog_pages, 0u);
      EXPECT_EQ(st.scrub_errors, 0u);
    } else {
      bool freed = false;
      for (int i = 0; i < 500 && !freed; ++i) {
        freed = m.Stats().segments.at(0).info.free_pages.value == total;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      EXPECT_TRUE(freed);
      EXPECT_EQ(m.Stats().scrub_errors, 1u);  // the failed inline zeroing
    }
    std::string back(64 << 10, '?');
    ASSERT_EQ(pread(*fd, back.data(), back.size(), off),
              static_cast<ssize_t>(back.size()));
    EXPECT_EQ(back, std::string(64 << 10, '\0'));
    m.Shutdown();
  }
}

// Per-tenant caps: waiters and Watch streams.
TEST_F(PoolManagerTest, WaitersAndStreamsPerTenantAreCapped) {
  ManagerOptions o;
  o.max_waiters_per_tenant = 2;
  o.max_watch_streams_per_tenant = 2;
  PoolManager m(o, source_.get(), &clock_, tenants_.get());
  ASSERT_OK(m.Start());
  AllocateParams all;
  all.req.bytes = 4 << 20;
  m.Allocate(tenant_, all, clock_.Now() + absl::Seconds(10),
             [](absl::StatusOr<LeaseInfo> r) { EXPECT_OK(r.status()); });
  AllocateParams wait;
  wait.req.bytes = 4096;
  wait.may_wait = true;
  std::vector<uint64_t> handles;
  for (int i = 0; i < 2; ++i) {
    handles.push_back(
        m.Allocate(tenant_, wait, clock_.Now() + absl::Seconds(60),
                   [](absl::StatusOr<LeaseInfo> r) {
                     EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
                   }));
  }
  absl::Notification third;
  m.Allocate(tenant_, wait, clock_.Now() + absl::Seconds(60),
             [&](absl::StatusOr<LeaseInfo> r) {
               EXPECT_EQ(r.status().code(),
                         absl::StatusCode::kResourceExhausted);
               EXPECT_THAT(std::string(r.status().message()),
                           ::testing::HasSubstr("wait.max_waiters_per_tenant"));
               third.Notify();
             });
  third.WaitForNotification();
  for (uint64_t h : handles) m.CancelWait(h);
  ASSERT_OK(m.Subscribe("a", [](const LeaseEventInfo&) {}).status());
  ASSERT_OK(m.Subscribe("a", [](const LeaseEventInfo&) {}).status());
  auto over = m.Subscribe("a", [](const LeaseEventInfo&) {});
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(over.status().message()),
              ::testing::HasSubstr("watch.max_streams_per_tenant"));
  EXPECT_OK(m.Subscribe("b", [](const LeaseEventInfo&) {}).status());
}

}  // namespace
}  // namespace physpool::server
