// SPDX-License-Identifier: Apache-2.0
// The WaitQueue: waiters in arrival order, per-tenant counts, deadlines,
// look-ups by handle and request id, and the starvation guard (Competes).
#include "server/lease/wait_queue.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace physpool::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);
constexpr absl::Duration kStarvation = absl::Seconds(5);

AllocateParams Params(uint64_t low = 0, uint64_t high = pglist::kMaxIova,
                      int32_t numa = -1, bool strict = false) {
  AllocateParams p;
  p.req.bytes = 1 << 20;
  p.req.low = low;
  p.req.high = high;
  p.req.numa = numa;
  p.numa_strict = strict;
  return p;
}

Waiter Make(uint64_t handle, const std::string& tenant, absl::Time since,
            absl::Time deadline, AllocateParams p = Params()) {
  Waiter w;
  w.handle = handle;
  w.tenant.name = tenant;
  w.params = std::move(p);
  w.since = since;
  w.deadline = deadline;
  return w;
}

std::vector<uint64_t> Handles(WaitQueue& q) {
  std::vector<uint64_t> out;
  for (auto it = q.begin(); it != q.end(); ++it) out.push_back(it->handle);
  return out;
}

TEST(CompetesTest, DisjointWindowsNeverCompete) {
  EXPECT_FALSE(Competes(Params(0, 100), Params(100, 200)));
  EXPECT_FALSE(Competes(Params(100, 200), Params(0, 100)));
  EXPECT_TRUE(Competes(Params(0, 101), Params(100, 200)));
  EXPECT_TRUE(Competes(Params(), Params(100, 200)));
}

TEST(CompetesTest, DifferentNodesAreApartOnlyIfBothAreStrict) {
  EXPECT_FALSE(Competes(Params(0, pglist::kMaxIova, 0, true),
                        Params(0, pglist::kMaxIova, 1, true)));
  // A preferred node that may fall back to any competes with every node.
  EXPECT_TRUE(Competes(Params(0, pglist::kMaxIova, 0, true),
                       Params(0, pglist::kMaxIova, 1, false)));
  EXPECT_TRUE(Competes(Params(0, pglist::kMaxIova, 0, false),
                       Params(0, pglist::kMaxIova, 1, true)));
  // Same node, or any node.
  EXPECT_TRUE(Competes(Params(0, pglist::kMaxIova, 1, true),
                       Params(0, pglist::kMaxIova, 1, true)));
  EXPECT_TRUE(Competes(Params(0, pglist::kMaxIova, -1, true),
                       Params(0, pglist::kMaxIova, 1, true)));
}

TEST(WaitQueueTest, KeepsArrivalOrderAndCountsPerTenant) {
  WaitQueue q(kStarvation);
  const absl::Time d = kT0 + absl::Minutes(1);
  q.Push(Make(3, "alice", kT0, d));
  q.Push(Make(1, "bob", kT0, d));
  q.Push(Make(2, "alice", kT0, d));
  EXPECT_THAT(Handles(q), ElementsAre(3, 1, 2));
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.CountOf("alice"), 2u);
  EXPECT_EQ(q.CountOf("bob"), 1u);
  EXPECT_EQ(q.CountOf("carol"), 0u);

  std::optional<Waiter> w = q.Remove(3);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->handle, 3u);
  EXPECT_FALSE(q.Remove(3).has_value());
  EXPECT_EQ(q.CountOf("alice"), 1u);
  EXPECT_THAT(Handles(q), ElementsAre(1, 2));

  // Erase returns the next waiter and keeps the counts.
  auto next = q.Erase(q.begin());
  ASSERT_NE(next, q.end());
  EXPECT_EQ(next->handle, 2u);
  EXPECT_EQ(q.CountOf("bob"), 0u);
  EXPECT_EQ(q.size(), 1u);
}

TEST(WaitQueueTest, ByRequestMatchesTenantAndRequestId) {
  WaitQueue q(kStarvation);
  const absl::Time d = kT0 + absl::Minutes(1);
  AllocateParams p = Params();
  p.request_id = "r1";
  q.Push(Make(1, "alice", kT0, d, p));
  q.Push(Make(2, "bob", kT0, d, p));
  ASSERT_NE(q.ByRequest("bob", "r1"), nullptr);
  EXPECT_EQ(q.ByRequest("bob", "r1")->handle, 2u);
  EXPECT_EQ(q.ByRequest("alice", "r1")->handle, 1u);
  EXPECT_EQ(q.ByRequest("alice", "r2"), nullptr);
  EXPECT_EQ(q.ByRequest("carol", "r1"), nullptr);
}

TEST(WaitQueueTest, TakeExpiredEndsExactlyThoseAtOrPastTheirDeadline) {
  WaitQueue q(kStarvation);
  q.Push(Make(1, "alice", kT0, kT0 + absl::Seconds(30)));
  q.Push(Make(2, "alice", kT0, kT0 + absl::Seconds(10)));
  q.Push(Make(3, "bob", kT0, kT0 + absl::Seconds(20)));
  EXPECT_EQ(q.NextDeadline(), kT0 + absl::Seconds(10));

  std::vector<uint64_t> ended;
  q.TakeExpired(kT0 + absl::Seconds(20),
                [&](Waiter w) { ended.push_back(w.handle); });
  EXPECT_THAT(ended, ElementsAre(2, 3));  // queue order
  EXPECT_THAT(Handles(q), ElementsAre(1));
  EXPECT_EQ(q.CountOf("bob"), 0u);
  EXPECT_EQ(q.CountOf("alice"), 1u);
  EXPECT_EQ(q.NextDeadline(), kT0 + absl::Seconds(30));

  ended.clear();
  q.TakeExpired(kT0 + absl::Seconds(29),
                [&](Waiter w) { ended.push_back(w.handle); });
  EXPECT_THAT(ended, IsEmpty());
  q.TakeExpired(kT0 + absl::Seconds(30),
                [&](Waiter w) { ended.push_back(w.handle); });
  EXPECT_THAT(ended, ElementsAre(1));
  EXPECT_EQ(q.NextDeadline(), std::nullopt);
}

TEST(WaitQueueTest, OnlyAStarvingWaiterThatCompetesHoldsARequestBack) {
  WaitQueue q(kStarvation);
  const absl::Time d = kT0 + absl::Minutes(10);
  q.Push(Make(1, "alice", kT0, d, Params(0, 1000)));
  const absl::Time young = kT0 + absl::Seconds(4);
  const absl::Time old = kT0 + kStarvation;
  // Not waiting long enough yet.
  EXPECT_EQ(q.StarvingRival(Params(0, 1000), young, q.end()), nullptr);
  // Starving: holds back a request for the same memory...
  const Waiter* rival = q.StarvingRival(Params(500, 2000), old, q.end());
  ASSERT_NE(rival, nullptr);
  EXPECT_EQ(rival->handle, 1u);
  // ...and only that: other memory goes on.
  EXPECT_EQ(q.StarvingRival(Params(1000, 2000), old, q.end()), nullptr);
}

TEST(WaitQueueTest, StarvingRivalIsTheOldestAheadOfTheAskingWaiter) {
  WaitQueue q(kStarvation);
  const absl::Time d = kT0 + absl::Minutes(10);
  q.Push(Make(1, "alice", kT0, d, Params(0, 1000)));
  q.Push(Make(2, "bob", kT0, d, Params(2000, 3000)));
  q.Push(Make(3, "bob", kT0, d, Params(0, 3000)));
  const absl::Time now = kT0 + absl::Minutes(1);
  // The oldest competing one ahead wins.
  const Waiter* r = q.StarvingRival(Params(0, 3000), now, q.end());
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->handle, 1u);
  r = q.StarvingRival(Params(2500, 3000), now, q.end());
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->handle, 2u);
  // A waiter is held back only by those ahead of it: the first never.
  EXPECT_EQ(q.StarvingRival(q.begin()->params, now, q.begin()), nullptr);
  auto third = std::next(q.begin(), 2);
  r = q.StarvingRival(third->params, now, third);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->handle, 1u);
  // The second (2000..3000) competes with nothing ahead of it.
  auto second = std::next(q.begin());
  EXPECT_EQ(q.StarvingRival(second->params, now, second), nullptr);
}

TEST(WaitQueueTest, DrainRemovesAllOldestFirst) {
  WaitQueue q(kStarvation);
  const absl::Time d = kT0 + absl::Minutes(1);
  q.Push(Make(5, "alice", kT0, d));
  q.Push(Make(4, "bob", kT0, d));
  q.Push(Make(6, "alice", kT0, d));
  std::vector<uint64_t> drained;
  q.Drain([&](Waiter w) { drained.push_back(w.handle); });
  EXPECT_THAT(drained, ElementsAre(5, 4, 6));
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.CountOf("alice"), 0u);
  EXPECT_EQ(q.CountOf("bob"), 0u);
  EXPECT_EQ(q.NextDeadline(), std::nullopt);
}

}  // namespace
}  // namespace physpool::server
