// SPDX-License-Identifier: Apache-2.0
// The Reclaimer: reclaims in progress by handle and request id, which are
// ready (grace period over, victims' ends durable) and when, and what they
// hold against their tenant's quota.
#include "server/lease/reclaimer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace physpool::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

PendingReclaim Make(uint64_t handle, const std::string& tenant,
                    absl::Time ready, uint64_t bytes = 4096,
                    int unrecorded = 0) {
  PendingReclaim r;
  r.handle = handle;
  r.tenant.name = tenant;
  r.bytes = bytes;
  r.ready = ready;
  r.unrecorded_ends = unrecorded;
  r.done = [](absl::StatusOr<LeaseInfo>) {};
  return r;
}

std::vector<uint64_t> HandlesOf(const std::vector<PendingReclaim*>& rs) {
  std::vector<uint64_t> out;
  for (const PendingReclaim* r : rs) out.push_back(r->handle);
  return out;
}

TEST(ReclaimerTest, FindsByHandleAndByTenantsRequestId) {
  Reclaimer r;
  PendingReclaim a = Make(1, "alice", kT0);
  a.params.request_id = "r1";
  PendingReclaim b = Make(2, "bob", kT0);
  b.params.request_id = "r1";
  r.Add(std::move(a));
  r.Add(std::move(b));
  EXPECT_EQ(r.size(), 2u);
  ASSERT_NE(r.ByHandle(2), nullptr);
  EXPECT_EQ(r.ByHandle(2)->tenant.name, "bob");
  EXPECT_EQ(r.ByHandle(3), nullptr);
  ASSERT_NE(r.ByRequest("alice", "r1"), nullptr);
  EXPECT_EQ(r.ByRequest("alice", "r1")->handle, 1u);
  EXPECT_EQ(r.ByRequest("bob", "r1")->handle, 2u);
  EXPECT_EQ(r.ByRequest("alice", "r2"), nullptr);
}

TEST(ReclaimerTest, TakeRemovesOnlyThatReclaim) {
  Reclaimer r;
  r.Add(Make(1, "alice", kT0));
  r.Add(Make(2, "alice", kT0));
  std::optional<PendingReclaim> taken = r.Take(1);
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(taken->handle, 1u);
  EXPECT_FALSE(r.Take(1).has_value());
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ(r.ByHandle(1), nullptr);
  EXPECT_NE(r.ByHandle(2), nullptr);
}

TEST(ReclaimerTest, ReadyOncePastGraceWithDurableEndsAndTakenOnce) {
  Reclaimer r;
  r.Add(Make(1, "alice", kT0 + absl::Seconds(2)));
  r.Add(Make(2, "alice", kT0 + absl::Seconds(1)));
  r.Add(Make(3, "alice", kT0 + absl::Seconds(1), 4096, /*unrecorded=*/1));
  r.Add(Make(4, "alice", kT0 + absl::Seconds(5)));
  EXPECT_THAT(r.TakeReady(kT0), IsEmpty());
  // Oldest first (insertion order); not the one whose victim's end is not
  // yet durable, nor the one still in its grace period.
  EXPECT_THAT(HandlesOf(r.TakeReady(kT0 + absl::Seconds(2))),
              ElementsAre(1, 2));
  EXPECT_TRUE(r.ByHandle(1)->zeroing);
  EXPECT_FALSE(r.ByHandle(3)->zeroing);
  // Taken once: zeroing now.
  EXPECT_THAT(r.TakeReady(kT0 + absl::Seconds(2)), IsEmpty());
  // The victim's end is recorded.
  r.ByHandle(3)->unrecorded_ends = 0;
  EXPECT_THAT(HandlesOf(r.TakeReady(kT0 + absl::Seconds(2))), ElementsAre(3));
  EXPECT_THAT(HandlesOf(r.TakeReady(kT0 + absl::Seconds(5))), ElementsAre(4));
}

TEST(ReclaimerTest, NextReadyIsTheEarliestGraceEndNotYetZeroing) {
  Reclaimer r;
  EXPECT_EQ(r.NextReady(), std::nullopt);
  r.Add(Make(1, "alice", kT0 + absl::Seconds(3)));
  r.Add(Make(2, "alice", kT0 + absl::Seconds(1)));
  EXPECT_EQ(r.NextReady(), kT0 + absl::Seconds(1));
  r.TakeReady(kT0 + absl::Seconds(1));  // 2 is zeroing
  EXPECT_EQ(r.NextReady(), kT0 + absl::Seconds(3));
  r.TakeReady(kT0 + absl::Seconds(3));
  EXPECT_EQ(r.NextReady(), std::nullopt);
}

// A reclaim whose victims' ends are not stored yet has no ready time: the
// maintenance thread sleeps until the last end is recorded (and wakes it)
// rather than spinning on a time in the past while the store fails.
TEST(ReclaimerTest, NextReadyLeavesOutReclaimsWaitingForTheirVictimsEnds) {
  Reclaimer r;
  r.Add(Make(1, "alice", kT0, 4096, /*unrecorded=*/1));
  EXPECT_EQ(r.NextReady(), std::nullopt);
  EXPECT_THAT(HandlesOf(r.TakeReady(kT0 + absl::Hours(1))), IsEmpty());
  r.Add(Make(2, "bob", kT0 + absl::Seconds(5)));
  EXPECT_EQ(r.NextReady(), kT0 + absl::Seconds(5));
  r.ByHandle(1)->unrecorded_ends = 0;
  EXPECT_EQ(r.NextReady(), kT0);
}

TEST(ReclaimerTest, PendingCountsOnlyTheTenantsUnansweredReclaims) {
  Reclaimer r;
  r.Add(Make(1, "alice", kT0, 8192));
  r.Add(Make(2, "alice", kT0, 4096));
  r.Add(Make(3, "bob", kT0, 65536));
  TenantUsage u = r.Pending("alice");
  EXPECT_EQ(u.bytes, 12288u);
  EXPECT_EQ(u.leases, 2u);
  EXPECT_EQ(r.Pending("bob").bytes, 65536u);
  EXPECT_EQ(r.Pending("carol").leases, 0u);
  // A cancelled reclaim still frees its window but becomes no lease: it
  // holds nothing against the quota.
  r.ByHandle(1)->done = nullptr;
  u = r.Pending("alice");
  EXPECT_EQ(u.bytes, 4096u);
  EXPECT_EQ(u.leases, 1u);
  r.Take(2);
  EXPECT_EQ(r.Pending("alice").leases, 0u);
}

TEST(ReclaimerTest, ForEachVisitsEveryReclaimInOrder) {
  Reclaimer r;
  r.Add(Make(7, "alice", kT0));
  r.Add(Make(5, "bob", kT0));
  std::vector<uint64_t> seen;
  r.ForEach([&](PendingReclaim& p) { seen.push_back(p.handle); });
  EXPECT_THAT(seen, ElementsAre(7, 5));
}

}  // namespace
}  // namespace physpool::server
