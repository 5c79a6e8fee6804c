// SPDX-License-Identifier: Apache-2.0
// The slice's devices from physpoold's pool: capacity, the NUMA attributes
// (the driver's own and the standard one), draining and not serving.
#include <gtest/gtest.h>

#include "dra/pool_facts.h"
#include "dra/slice_publisher.h"

namespace physpool::dra {
namespace {

using nlohmann::json;

constexpr uint64_t kMiB = 1 << 20;

v1::GetPoolInfoResponse TwoNodes() {
  v1::GetPoolInfoResponse info;
  info.set_page_size(4096);
  for (int i = 0; i < 3; ++i) {
    v1::SegmentInfo* s = info.add_segments();
    s->set_id(i);
    s->set_numa_node(i == 0 ? 0 : 1);  // node 1 has two segments
    s->set_bytes(64 * kMiB);
    s->set_free_bytes(64 * kMiB);
    s->set_largest_free_run_bytes(64 * kMiB);
  }
  return info;
}

std::map<std::string, json> ByName(const json& devices) {
  std::map<std::string, json> out;
  for (const json& d : devices) out[d.at("name").get<std::string>()] = d;
  return out;
}

TEST(SliceDevices, PublishesTheStandardNumaAttributeBesideTheOwn) {
  auto d = ByName(SliceDevices(PoolFactsFrom(TwoNodes(), {}), true));
  ASSERT_EQ(d.size(), 2u);
  for (auto& [name, dev] : d) {
    const int node = name == "numa0" ? 0 : 1;
    // Not const: a missing key reads as null (a failed EXPECT), not UB.
    json a = dev["attributes"];
    EXPECT_EQ(a["resource.kubernetes.io/numaNode"], json({{"int", node}}));
    EXPECT_TRUE(
        a["resource.kubernetes.io/numaNode"]["int"].is_number_integer());
    EXPECT_EQ(a["numaNode"], json({{"int", node}}));
    EXPECT_EQ(a["schedulable"], json({{"bool", true}}));
    EXPECT_EQ(a["state"], json({{"string", "Serving"}}));
  }
  EXPECT_EQ(d["numa0"]["capacity"]["memory"]["value"], "64Mi");
  EXPECT_EQ(d["numa1"]["capacity"]["memory"]["value"], "128Mi");
}

TEST(SliceDevices, APoolWithoutNodesHasNoNumaAttribute) {
  v1::GetPoolInfoResponse info = TwoNodes();
  info.mutable_segments(2)->set_numa_node(-1);
  auto d = ByName(SliceDevices(PoolFactsFrom(info, {}), true));
  ASSERT_EQ(d.size(), 1u);
  EXPECT_FALSE(d["pool"]["attributes"].contains("numaNode"));
  EXPECT_FALSE(
      d["pool"]["attributes"].contains("resource.kubernetes.io/numaNode"));
  EXPECT_EQ(d["pool"]["capacity"]["memory"]["value"], "192Mi");
}

TEST(SliceDevices, ANodeWhoseSegmentsAllDrainCannotBeAllocated) {
  v1::GetPoolInfoResponse info = TwoNodes();
  info.mutable_segments(1)->set_draining(true);
  auto d = ByName(SliceDevices(PoolFactsFrom(info, {}), true));
  // One of two draining: still schedulable, without its bytes.
  EXPECT_EQ(d["numa1"]["capacity"]["memory"]["value"], "64Mi");
  EXPECT_EQ(d["numa1"]["attributes"]["schedulable"], json({{"bool", true}}));
  info.mutable_segments(2)->set_draining(true);
  d = ByName(SliceDevices(PoolFactsFrom(info, {}), true));
  EXPECT_EQ(d["numa1"]["capacity"]["memory"]["value"], "0");
  EXPECT_EQ(d["numa1"]["attributes"]["schedulable"], json({{"bool", false}}));
  EXPECT_EQ(d["numa1"]["attributes"]["state"], json({{"string", "Draining"}}));
  EXPECT_EQ(d["numa1"]["attributes"]["resource.kubernetes.io/numaNode"],
            json({{"int", 1}}));
  EXPECT_EQ(d["numa0"]["capacity"]["memory"]["value"], "64Mi");
  EXPECT_EQ(d["numa0"]["attributes"]["schedulable"], json({{"bool", true}}));
}

TEST(SliceDevices, NotServingMakesEveryDeviceUnallocatable) {
  auto d = ByName(SliceDevices(PoolFactsFrom(TwoNodes(), {}), false));
  ASSERT_EQ(d.size(), 2u);
  for (const auto& [name, dev] : d) {
    EXPECT_EQ(dev["capacity"]["memory"]["value"], "0") << name;
    EXPECT_EQ(dev["attributes"]["schedulable"], json({{"bool", false}}));
    EXPECT_EQ(dev["attributes"]["state"], json({{"string", "NotServing"}}));
    EXPECT_EQ(dev["attributes"]["freeBytes"], json({{"int", 0}}));
    // Still the node's device: claims already allocated keep making sense.
    EXPECT_TRUE(dev["attributes"].contains("resource.kubernetes.io/numaNode"));
  }
}

TEST(PoolFacts, OtherTenantsBytesAreNotOffered) {
  v1::GetPoolInfoResponse info = TwoNodes();
  info.mutable_segments(0)->set_used_bytes(16 * kMiB);
  info.mutable_segments(0)->set_scrubbing_bytes(8 * kMiB);
  // 4 MiB of the used bytes are this driver's claims': the scheduler counts
  // those itself.
  PoolFacts f = PoolFactsFrom(info, {{"numa0", 4 * kMiB}});
  EXPECT_EQ(f.devices["numa0"].capacity, 44 * kMiB);
  EXPECT_FALSE(f.devices["numa0"].draining);
}

}  // namespace
}  // namespace physpool::dra
