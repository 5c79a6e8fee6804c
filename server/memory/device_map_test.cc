// SPDX-License-Identifier: Apache-2.0
// The device map (memory/device_map.h) on a VfioSource over the fake
// kernel with tenant devices: a lease is mapped into its tenant's domains
// and nobody else's; an unmap that fails leaves the allocation stuck
// (counted, its bytes reported, still mapped); a tenant without devices is
// never stuck; MapAgain gives the devices a lease back, and a failure is
// counted; Reconcile makes the domains map exactly the live leases.
#include "server/memory/device_map.h"

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/memory/testing/memory_parts.h"

namespace physpool::server {
namespace {

constexpr uint64_t kPage = MemoryParts::kPage;

class DeviceMapTest : public ::testing::Test {
 protected:
  // The source on the fault injector (which passes every call on until a
  // test names one to fail) and the memory components on it.
  void SetUp() override {
    ASSERT_OK(vfio_.Start(&vfio_.faulty));
    m_ = std::make_unique<MemoryParts>();
    ASSERT_OK(m_->Start(vfio_.source.get()));
  }
  DeviceMap& devices() { return m_->c().devices; }
  std::vector<vfio::MemorySource::ViewRange> Ranges(pglist::AllocationId a) {
    std::vector<vfio::MemorySource::ViewRange> r;
    m_->Run([&](Turn& t) { r = m_->c().segments.RangesOf(t, a); });
    return r;
  }
  // An allocation of `pages`, mapped for `tenant`'s devices.
  pglist::AllocationId Mapped(const std::string& tenant, uint64_t pages) {
    const pglist::AllocationId a = m_->Allocate(pages * kPage);
    EXPECT_NE(a, 0u);
    EXPECT_OK(devices().Map(tenant, Ranges(a)));
    return a;
  }
  bool Stuck(pglist::AllocationId a) {
    bool stuck = false;
    m_->Run([&](Turn& t) { stuck = devices().IsStuck(t, a); });
    return stuck;
  }
  uint64_t StuckBytes() {
    uint64_t bytes = 0;
    m_->Run([&](Turn& t) { bytes = devices().StuckBytes(t); });
    return bytes;
  }

  FakeVfio vfio_;  // outlives m_
  std::unique_ptr<MemoryParts> m_;
};

TEST_F(DeviceMapTest, OnlyTenantsWithDevicesHaveDevices) {
  EXPECT_TRUE(devices().HasDevices("a"));
  EXPECT_TRUE(devices().HasDevices("b"));
  EXPECT_FALSE(devices().HasDevices("c"));
}

TEST_F(DeviceMapTest, ALeaseIsMappedIntoItsTenantsDomainsOnly) {
  Mapped("a", 8);
  EXPECT_EQ(vfio_.MappedBytes(1), 8 * kPage);
  EXPECT_EQ(vfio_.MappedBytes(2), 8 * kPage);
  EXPECT_EQ(vfio_.MappedBytes(3), 0u) << "tenant b's device reaches nothing";
  const int calls = vfio_.fake.map_calls();
  const pglist::AllocationId c = m_->Allocate(4 * kPage);
  EXPECT_OK(devices().Map("c", Ranges(c)));
  EXPECT_EQ(vfio_.fake.map_calls(), calls) << "c has no devices";
}

TEST_F(DeviceMapTest, AnUnmapLeavesNoDeviceReachingTheLease) {
  const pglist::AllocationId a = Mapped("a", 8);
  const pglist::AllocationId kept = Mapped("a", 2);
  m_->Run([&](Turn& t) { devices().Unmap(t, "a", a); });
  EXPECT_EQ(vfio_.MappedBytes(1), 2 * kPage) << "only the other lease";
  EXPECT_EQ(vfio_.MappedBytes(2), 2 * kPage);
  EXPECT_FALSE(Stuck(a));
  EXPECT_FALSE(Stuck(kept));
  EXPECT_EQ(devices().unmap_errors(), 0u);
  EXPECT_EQ(StuckBytes(), 0u);
}

// type1 lets only the process that mapped unmap: here every UNMAP_DMA is
// cut short, as the kernel does it.
TEST_F(DeviceMapTest, AFailedUnmapLeavesTheAllocationStuck) {
  const pglist::AllocationId a = Mapped("a", 8);
  const pglist::AllocationId other = Mapped("a", 1);
  vfio_.fake.mm = 2;
  m_->Run([&](Turn& t) { devices().Unmap(t, "a", a); });
  vfio_.fake.mm = 1;
  EXPECT_TRUE(Stuck(a));
  EXPECT_FALSE(Stuck(other));
  EXPECT_EQ(devices().unmap_errors(), 1u);
  EXPECT_EQ(StuckBytes(), 8 * kPage);
  EXPECT_GE(vfio_.MappedBytes(1) + vfio_.MappedBytes(2), 8 * kPage)
      << "a device may still reach it";
  EXPECT_TRUE(m_->Allocated(a)) << "never freed by the device map";
}

TEST_F(DeviceMapTest, ATenantWithoutDevicesIsNeverStuck) {
  const pglist::AllocationId a = m_->Allocate(4 * kPage);
  vfio_.fake.mm = 2;
  m_->Run([&](Turn& t) { devices().Unmap(t, "c", a); });
  vfio_.fake.mm = 1;
  EXPECT_FALSE(Stuck(a));
  EXPECT_EQ(devices().unmap_errors(), 0u);
}

TEST_F(DeviceMapTest, MapAgainGivesTheDevicesTheLeaseBack) {
  const pglist::AllocationId a = Mapped("a", 8);
  ASSERT_OK(devices().UnmapNow("a", Ranges(a)));
  ASSERT_EQ(vfio_.MappedBytes(1), 0u);
  m_->Run([&](Turn& t) { devices().MapAgain(t, "a", a, "l-1"); });
  EXPECT_EQ(vfio_.MappedBytes(1), 8 * kPage);
  EXPECT_EQ(vfio_.MappedBytes(2), 8 * kPage);
  EXPECT_EQ(devices().map_errors(), 0u);
}

TEST_F(DeviceMapTest, AMapAgainThatFailsIsCountedAndMapsNothing) {
  const pglist::AllocationId a = Mapped("a", 8);
  ASSERT_OK(devices().UnmapNow("a", Ranges(a)));
  vfio_.faulty.FailCall(vfio_.faulty.calls() + 2, ENOMEM);  // the 2nd map
  m_->Run([&](Turn& t) { devices().MapAgain(t, "a", a, "l-1"); });
  vfio_.faulty.FailCall(0, 0);
  EXPECT_EQ(devices().map_errors(), 1u);
  EXPECT_EQ(vfio_.MappedBytes(1), 0u) << "all or nothing";
  EXPECT_EQ(vfio_.MappedBytes(2), 0u);
  m_->Run([&](Turn& t) { devices().CountMapError(t); });
  EXPECT_EQ(devices().map_errors(), 2u);
}

TEST_F(DeviceMapTest, ReconcileMapsExactlyTheLiveLeases) {
  const pglist::AllocationId ended = Mapped("a", 8);  // a previous daemon's
  const pglist::AllocationId theirs = Mapped("b", 2);
  const pglist::AllocationId live = m_->Allocate(4 * kPage);  // not mapped
  absl::Status reconciled;
  m_->Run([&](Turn& t) {
    reconciled = devices().Reconcile(t, {{"a", Ranges(live)}});
  });
  ASSERT_OK(reconciled);
  EXPECT_EQ(vfio_.MappedBytes(1), 4 * kPage);
  EXPECT_EQ(vfio_.MappedBytes(2), 4 * kPage);
  EXPECT_EQ(vfio_.MappedBytes(3), 0u) << "b has no live lease";
  const auto runs = Ranges(live);
  for (const auto& [iova, m] : vfio_.fake.mappings_of(1)) {
    bool inside = false;
    for (const auto& r : runs)
      inside |= r.iova <= iova && iova + m.bytes <= r.iova + r.bytes;
    EXPECT_TRUE(inside) << "a mapping at " << iova << " of no live lease";
  }
  (void)ended;
  (void)theirs;
}

}  // namespace
}  // namespace physpool::server
