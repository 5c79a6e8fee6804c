// SPDX-License-Identifier: Apache-2.0
// Device domains (docs/vfio.md, "Device domains") above the source: the
// PoolManager and the fd socket on a VfioSource driving the fake kernel.
// A grant maps the lease into its tenant's domains and nobody else's; an
// end unmaps before it answers; a grant whose map fails frees its memory
// zeroed with nothing left mapped; an end whose unmap fails holds the
// memory back; a tenant's device fd goes to that tenant only.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/core/clock.h"
#include "server/core/fake_clock.h"
#include "server/lease/tenants.h"
#include "server/pool_manager.h"
#include "server/rpc/fd_server.h"
#include "server/rpc/services.h"
#include "util/errno_status.h"
#include "vfio/fake_kernel.h"
#include "vfio/vfio_source.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kPoolBytes = 4 * kMiB;
// Tenant a has two devices in two groups (two domains), b one, and one
// device is pool-wide (the pool's container).
constexpr char kA1[] = "0000:00:01.0";    // group 1, tenant a
constexpr char kA2[] = "0000:00:03.0";    // group 2, tenant a
constexpr char kB[] = "0000:00:04.0";     // group 3, tenant b
constexpr char kPool[] = "0000:00:05.0";  // group 4, pool-wide

Tenant MakeTenant(const std::string& name, uint32_t roles) {
  Tenant t;
  t.name = name;
  t.roles = roles;
  t.token_sha256 = {Sha256Hex("tok-" + name)};
  return t;
}

class DeviceDomainsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernel_.device_groups = {{kA1, 1}, {kA2, 2}, {kB, 3}, {kPool, 4}};
    tenants_ = std::make_unique<TenantRegistry>(std::vector<Tenant>{
        MakeTenant("a", kRoleTenant),
        MakeTenant("b", kRoleTenant),
        MakeTenant("c", kRoleTenant),  // no devices
        MakeTenant("priv", kRoleTenant | kRolePrivileged),
        MakeTenant("root", kRoleTenant | kRoleAdmin | kRolePrivileged),
    });
  }
  void TearDown() override {
    if (manager_) manager_->Shutdown();
    manager_.reset();
    source_.reset();
  }

  // The source on `kernel` (the fake, or a FaultyKernel around it) and a
  // manager on it, started. 4 MiB in four 1 MiB physsegs, 4 KiB pages.
  void StartOn(vfio::Kernel* kernel,
               absl::Duration reclaim_grace = absl::Milliseconds(200)) {
    vfio::VfioConfig c;
    c.devices = {{kA1, 0, "a"}, {kA2, 0, "a"}, {kB, 0, "b"}, {kPool, 0, ""}};
    c.backing = vfio::BackingKind::kMemfd;
    c.group_busy_timeout = absl::Milliseconds(300);
    c.layout.page_size = kPage;
    c.layout.max_segment_bytes = kMiB;
    c.layout.pool = {{0, kPoolBytes, std::nullopt}};
    source_ = std::make_unique<vfio::VfioSource>(c, kernel);
    ASSERT_OK(source_->Start());
    ASSERT_EQ(source_->segments().size(), 4u);
    ManagerOptions o;
    o.default_ttl = absl::Seconds(60);
    o.scrub_retry = absl::Milliseconds(50);
    o.reclaim_grace = reclaim_grace;
    manager_ = std::make_unique<PoolManager>(o, source_.get(), &clock_,
                                             tenants_.get());
    ASSERT_OK(manager_->Start());
  }

  Tenant T(const std::string& name) { return *tenants_->ByName(name); }

  absl::StatusOr<LeaseInfo> Allocate(const std::string& tenant, uint64_t bytes,
                                     bool wait = false) {
    AllocateParams p;
    p.req.bytes = bytes;
    p.may_wait = wait;
    return Allocate(tenant, p);
  }
  absl::StatusOr<LeaseInfo> Allocate(const std::string& tenant,
                                     AllocateParams p) {
    absl::Mutex mu;
    std::optional<absl::StatusOr<LeaseInfo>> result;
    manager_->Allocate(T(tenant), p, clock_.Now() + absl::Seconds(60),
                       [&](absl::StatusOr<LeaseInfo> r) {
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

  uint64_t FreeBytes() {
    uint64_t free = 0;
    for (const SegmentView& s : manager_->Stats().segments)
      free += s.info.free_pages.value * kPage;
    return free;
  }
  // Waits (wall time, bounded) until `bytes` are free.
  bool WaitFree(uint64_t bytes) {
    for (int i = 0; i < 500; ++i) {
      if (FreeBytes() == bytes) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // Fills every byte of every run with `c` through the backing (what the
  // tenant, or its device, writes).
  void Fill(const std::vector<LeaseRun>& runs, char c) {
    for (const LeaseRun& r : runs) {
      ASSERT_OK_AND_ASSIGN(int fd, source_->BackingFd(r.iova));
      const std::string junk(r.bytes, c);
      ASSERT_EQ(pwrite(fd, junk.data(), junk.size(), r.backing_offset),
                static_cast<ssize_t>(junk.size()));
      close(fd);
    }
  }
  // Bytes of the runs that are not `c`.
  uint64_t CountNot(const std::vector<LeaseRun>& runs, char c) {
    uint64_t n = 0;
    for (const LeaseRun& r : runs) {
      auto fd = source_->BackingFd(r.iova);
      EXPECT_OK(fd.status());
      if (!fd.ok()) return ~uint64_t{0};
      std::string back(r.bytes, '?');
      EXPECT_EQ(pread(*fd, back.data(), back.size(), r.backing_offset),
                static_cast<ssize_t>(back.size()));
      close(*fd);
      for (char b : back) n += b != c;
    }
    return n;
  }
  // The whole pool as runs (for Fill / CountNot): one per physseg.
  std::vector<LeaseRun> PoolRuns() {
    std::vector<LeaseRun> out;
    for (const vfio::BackedSegment& s : source_->segments()) {
      LeaseRun r;
      r.iova = s.spec.iova;
      r.bytes = s.spec.pages.value * kPage;
      r.backing_offset = s.file_offset;
      out.push_back(r);
    }
    return out;
  }

  // Each run of `lease` is mapped in `group`'s domain at its IOVA (whole,
  // or in pieces that cover it exactly).
  void ExpectMapped(int group, const LeaseInfo& lease) {
    const auto m = kernel_.mappings_of(group);
    uint64_t total = 0;
    for (const auto& [iova, mapping] : m) total += mapping.bytes;
    EXPECT_EQ(total, lease.bytes) << "group " << group;
    for (const LeaseRun& r : lease.runs) {
      uint64_t covered = 0;
      for (auto it = m.lower_bound(r.iova);
           it != m.end() && it->first < r.iova + r.bytes; ++it) {
        covered += it->second.bytes;
      }
      EXPECT_EQ(covered, r.bytes) << "group " << group << ": run at " << r.iova;
    }
  }

  vfio::FakeKernel kernel_;
  FakeClock clock_;
  std::unique_ptr<TenantRegistry> tenants_;
  std::unique_ptr<vfio::VfioSource> source_;
  std::unique_ptr<PoolManager> manager_;
};

// A grant to a tenant with devices is mapped into each of its domains
// before it answers, at the lease's IOVAs; no other tenant's domain and
// not the pool's container change; a tenant without devices maps nothing.
TEST_F(DeviceDomainsTest, AGrantIsMappedIntoItsTenantsDomainsOnly) {
  StartOn(&kernel_);
  const auto pool_before = kernel_.mappings_of(4);
  ASSERT_EQ(pool_before.size(), 4u) << "the pool container maps each physseg";
  ASSERT_TRUE(kernel_.mappings_of(1).empty());
  ASSERT_OK_AND_ASSIGN(LeaseInfo lease, Allocate("a", 64 * 1024));
  ExpectMapped(1, lease);
  ExpectMapped(2, lease);
  EXPECT_TRUE(kernel_.mappings_of(3).empty()) << "tenant b reaches nothing";
  EXPECT_EQ(kernel_.mappings_of(4).size(), pool_before.size());
  for (const vfio::DeviceDomain& d : manager_->Stats().devices) {
    if (d.device.tenant == "a") {
      EXPECT_EQ(d.mapped_bytes, lease.bytes) << d.device.bdf;
    } else if (d.device.tenant == "b") {
      EXPECT_EQ(d.mappings, 0u) << d.device.bdf;
    }
  }
  // b's lease goes to b's domain, and a's stay as they were.
  ASSERT_OK_AND_ASSIGN(LeaseInfo theirs, Allocate("b", 8 * kPage));
  ExpectMapped(3, theirs);
  ExpectMapped(1, lease);
  const int maps = kernel_.map_calls();
  ASSERT_OK(Allocate("c", 8 * kPage).status());
  EXPECT_EQ(kernel_.map_calls(), maps) << "c has no devices";
  EXPECT_EQ(manager_->Stats().dma_map_errors, 0u);
}

// An end is unmapped from the tenant's domains before it answers: once
// Release (or an admin's Revoke) has returned, no device of the tenant
// reaches any byte of the lease.
TEST_F(DeviceDomainsTest, AnEndUnmapsBeforeItAnswers) {
  StartOn(&kernel_);
  for (uint64_t bytes : {8 * kPage, 2 * kMiB}) {  // zeroed inline, or not
    SCOPED_TRACE(bytes);
    ASSERT_OK_AND_ASSIGN(LeaseInfo lease, Allocate("a", bytes));
    ExpectMapped(1, lease);
    ASSERT_OK_AND_ASSIGN(bool released, manager_->Release(T("a"), lease.id));
    EXPECT_TRUE(released);
    EXPECT_TRUE(kernel_.mappings_of(1).empty());
    EXPECT_TRUE(kernel_.mappings_of(2).empty());

    ASSERT_OK_AND_ASSIGN(LeaseInfo other, Allocate("a", bytes, /*wait=*/true));
    ExpectMapped(2, other);
    ASSERT_OK(manager_->Revoke(other.id, "test").status());
    EXPECT_TRUE(kernel_.mappings_of(1).empty());
    EXPECT_TRUE(kernel_.mappings_of(2).empty());
    ASSERT_TRUE(WaitFree(kPoolBytes));
  }
  EXPECT_EQ(manager_->Stats().dma_unmap_errors, 0u);
  EXPECT_EQ(manager_->Stats().dma_stuck_bytes, 0u);
}

// A grant whose MAP_DMA fails (the second of its maps: the first is undone)
// fails with the kernel's errno, leaves nothing mapped, and its memory is
// zeroed (a device may have written to it meanwhile) and back in the pool.
TEST_F(DeviceDomainsTest, AGrantWhoseMapFailsIsFreedZeroedAndUnmapped) {
  vfio::FaultyKernel faulty(&kernel_);
  StartOn(&faulty);
  // What a device wrote: junk in all of the (free) pool.
  Fill(PoolRuns(), 'x');
  faulty.FailCall(faulty.calls() + 2, ENOMEM);
  absl::StatusOr<LeaseInfo> failed = Allocate("a", kPoolBytes);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(faulty.failed_step(), "VFIO_IOMMU_MAP_DMA");
  EXPECT_EQ(ErrnoOf(failed.status()), ENOMEM) << failed.status();
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(failed.status().message()),
              HasSubstr("VFIO_IOMMU_MAP_DMA"));
  EXPECT_TRUE(kernel_.mappings_of(1).empty());
  EXPECT_TRUE(kernel_.mappings_of(2).empty());
  EXPECT_TRUE(kernel_.mappings_of(3).empty());
  const ManagerStats st = manager_->Stats();
  EXPECT_EQ(st.dma_map_errors, 1u);
  for (const vfio::DeviceDomain& d : st.devices) {
    if (d.domain != "pool") {
      EXPECT_EQ(d.mappings, 0u) << d.device.bdf;
    }
  }
  // All of it comes back, zeroed.
  faulty.FailCall(0, 0);
  ASSERT_OK_AND_ASSIGN(LeaseInfo all, Allocate("c", kPoolBytes, /*wait=*/true));
  EXPECT_EQ(CountNot(all.runs, '\0'), 0u) << "the failed grant's memory";
  EXPECT_EQ(manager_->Stats().dma_stuck_bytes, 0u);
}

// An end whose unmap fails (type1 stops at a mapping of another mm: here
// every UNMAP_DMA is cut short) holds the memory back: counted as stuck,
// still mapped, never zeroed, never handed out again.
TEST_F(DeviceDomainsTest, AnEndWhoseUnmapFailsHoldsTheMemoryBack) {
  StartOn(&kernel_);
  ASSERT_OK_AND_ASSIGN(LeaseInfo stuck, Allocate("a", 2 * kMiB));
  Fill(stuck.runs, 'd');  // the device's data
  // Above kInlineZeroBytes: zeroed by the scrubber, as the stuck one
  // would be.
  ASSERT_OK_AND_ASSIGN(LeaseInfo fine, Allocate("c", kMiB + kPage));
  kernel_.mm = 2;  // unmaps are no longer the mapper's
  ASSERT_OK(manager_->Release(T("a"), stuck.id).status());
  ManagerStats st = manager_->Stats();
  EXPECT_EQ(st.dma_stuck_bytes, stuck.bytes);
  EXPECT_EQ(st.dma_unmap_errors, 1u);
  EXPECT_FALSE(kernel_.mappings_of(1).empty()) << "the device still reaches it";
  // Another end after it goes through the scrubber and back; the stuck
  // memory does not.
  ASSERT_OK(manager_->Release(T("c"), fine.id).status());
  ASSERT_TRUE(WaitFree(kPoolBytes - stuck.bytes))
      << FreeBytes() << " bytes free";
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(FreeBytes(), kPoolBytes - stuck.bytes);
  EXPECT_EQ(Allocate("c", kPoolBytes).status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_OK_AND_ASSIGN(LeaseInfo rest, Allocate("c", kPoolBytes - stuck.bytes));
  for (const LeaseRun& r : rest.runs) {
    for (const LeaseRun& s : stuck.runs) {
      EXPECT_TRUE(r.iova + r.bytes <= s.iova || s.iova + s.bytes <= r.iova)
          << "run at " << r.iova << " overlaps the stuck run at " << s.iova;
    }
  }
  EXPECT_EQ(CountNot(stuck.runs, 'd'), 0u) << "stuck memory is never zeroed";
  EXPECT_EQ(manager_->Stats().dma_stuck_bytes, stuck.bytes);
  kernel_.mm = 1;
}

// The same when the end is a preemption: the reclaim that preempted the
// lease does not get the memory its tenant's device still reaches.
TEST_F(DeviceDomainsTest, APreemptionWhoseUnmapFailsHoldsTheMemoryBack) {
  StartOn(&kernel_, /*reclaim_grace=*/absl::ZeroDuration());
  AllocateParams victim;
  victim.req.bytes = kMiB;  // one physseg: a window a reclaim can take
  victim.req.max_segments = 1;
  victim.req.preemptible = true;
  ASSERT_OK_AND_ASSIGN(LeaseInfo stuck, Allocate("a", victim));
  Fill(stuck.runs, 'd');  // the device's data
  ASSERT_OK(Allocate("c", kPoolBytes - stuck.bytes).status());  // the rest
  kernel_.mm = 2;  // unmaps are no longer the mapper's
  AllocateParams reclaim;
  reclaim.req.bytes = kMiB;
  reclaim.may_reclaim = true;
  absl::StatusOr<LeaseInfo> taken = Allocate("priv", reclaim);
  const ManagerStats st = manager_->Stats();
  EXPECT_EQ(st.dma_unmap_errors, 1u);
  EXPECT_EQ(st.dma_stuck_bytes, stuck.bytes);
  EXPECT_FALSE(kernel_.mappings_of(1).empty()) << "the device still reaches it";
  if (taken.ok()) {
    for (const LeaseRun& r : taken->runs) {
      for (const LeaseRun& s : stuck.runs) {
        EXPECT_TRUE(r.iova + r.bytes <= s.iova || s.iova + s.bytes <= r.iova)
            << "run at " << r.iova << " overlaps the stuck run at " << s.iova;
      }
    }
  }
  EXPECT_THAT(taken.status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("could not be unmapped from its tenant's")))
      << "there is no other memory";
  EXPECT_EQ(CountNot(stuck.runs, 'd'), 0u) << "stuck memory is never zeroed";
  EXPECT_EQ(manager_->Stats().dma_stuck_bytes, stuck.bytes);
  kernel_.mm = 1;
}

// The fd socket's device rule: a device assigned to a tenant gives its fd
// to that tenant (without the privileged role) and to nobody else, admins
// and privileged tenants included; a pool-wide device needs privileged.
TEST_F(DeviceDomainsTest, ATenantsDeviceFdGoesToThatTenantOnly) {
  StartOn(&kernel_);
  Authenticator auth(tenants_.get(), /*implicit_tenant=*/false);
  FdServer fd_server(source_.get(), manager_.get(), &auth);
  auto ask = [&](const std::string& bdf, const std::string& tenant) {
    std::vector<int> fds;
    std::string answer =
        fd_server.Answer("device " + std::string(bdf) + " tok-" + tenant, &fds);
    if (answer == "ok 1\n") {
      EXPECT_EQ(fds.size(), 1u);
    } else {
      EXPECT_TRUE(fds.empty()) << answer;
    }
    for (int fd : fds) kernel_.Close(fd);  // the fake's descriptors
    return answer;
  };
  EXPECT_EQ(ask(kA1, "a"), "ok 1\n") << "its own, without privileged";
  EXPECT_EQ(ask(kA2, "a"), "ok 1\n");
  EXPECT_EQ(ask(kB, "b"), "ok 1\n");
  for (const char* other : {"b", "c", "priv", "root"}) {
    SCOPED_TRACE(other);
    EXPECT_THAT(ask(kA1, other),
                StartsWith("error PERMISSION_DENIED device 0000:00:01.0 "
                           "belongs to tenant \"a\""));
  }
  EXPECT_THAT(ask(kB, "a"), StartsWith("error PERMISSION_DENIED"));
  EXPECT_THAT(ask(kB, "root"), StartsWith("error PERMISSION_DENIED"));
  // Pool-wide: privileged only, owners of other devices included.
  EXPECT_EQ(ask(kPool, "priv"), "ok 1\n");
  EXPECT_EQ(ask(kPool, "root"), "ok 1\n");
  for (const char* plain : {"a", "b", "c"}) {
    SCOPED_TRACE(plain);
    EXPECT_THAT(ask(kPool, plain),
                StartsWith("error PERMISSION_DENIED device fds of pool-wide "
                           "devices need the privileged role"));
  }
  EXPECT_THAT(ask("0000:00:09.0", "root"), StartsWith("error NOT_FOUND"));
  EXPECT_THAT(ask(kA1, "nobody"), StartsWith("error UNAUTHENTICATED"));
}

}  // namespace
}  // namespace physpool::server
