// SPDX-License-Identifier: Apache-2.0
#include "pglist/reclaim.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/pool.h"
#include "pglist/testing/status_matchers.h"

namespace physpool::pglist {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::ElementsAre;
constexpr uint64_t kPs = 4096;

PageRun R(uint64_t start, uint64_t pages) {
  return {Pfn(start), PageCount(pages)};
}

Pool MakePool(std::vector<std::pair<uint64_t, uint64_t>> segs) {
  Pool pool = *Pool::Create({});
  for (auto [pfn, pages] : segs) {
    SegmentSpec s;
    s.iova = pfn * kPs;
    s.pages = PageCount(pages);
    EXPECT_OK(pool.AddSegment(s));
  }
  return pool;
}

Request Contig(uint64_t pages) {
  Request r;
  r.bytes = pages * kPs;
  r.max_segments = 1;
  return r;
}

AllocationId Hold(Pool& pool, std::vector<PageRun> runs, bool preemptible) {
  auto a = pool.Claim(runs, preemptible);
  EXPECT_OK(a);
  return a.ok() ? a->id : 0;
}

TEST(ReclaimTest, PicksTheWindowWithFewestPreemptiblePages) {
  Pool pool = MakePool({{0, 32}});
  Hold(pool, {R(0, 2)}, false);
  Hold(pool, {R(18, 4)}, false);
  const AllocationId a = Hold(pool, {R(2, 8)}, true);
  const AllocationId b = Hold(pool, {R(10, 1)}, true);
  const AllocationId c = Hold(pool, {R(11, 1)}, true);
  Hold(pool, {R(24, 2)}, true);
  Hold(pool, {R(28, 1)}, true);
  ASSERT_EQ(FailReasonOf(pool.Allocate(Contig(8)).status()),
            FailReason::kNoSpace);
  ASSERT_OK_AND_ASSIGN(ReclaimPlan plan, pool.PlanReclaim(Contig(8)));
  EXPECT_EQ(plan.window, R(10, 8));  // only b and c: 2 pages
  EXPECT_EQ(plan.reclaim_pages, PageCount(2));
  EXPECT_THAT(plan.victims, ElementsAre(b, c));
  ASSERT_OK_AND_ASSIGN(Allocation got, pool.CommitReclaim(Contig(8), plan));
  EXPECT_EQ(got.path, Path::kAggressive);
  EXPECT_THAT(got.runs, ElementsAre(R(10, 8)));
  EXPECT_EQ(pool.Find(b), nullptr);
  EXPECT_NE(pool.Find(a), nullptr);
  ASSERT_OK(pool.Verify());
  EXPECT_EQ(pool.stats().at(Path::kAggressive).successes, 1u);
  EXPECT_EQ(pool.stats().fallback(Path::kContig, Path::kAggressive), 1u);
}

TEST(ReclaimTest, TiesGoToTheFewestAllocations) {
  Pool pool = MakePool({{0, 10}, {100, 10}});
  Hold(pool, {R(0, 1)}, true);
  Hold(pool, {R(9, 1)}, true);
  const AllocationId z = Hold(pool, {R(104, 2)}, true);
  ASSERT_OK_AND_ASSIGN(ReclaimPlan plan, pool.PlanReclaim(Contig(10)));
  EXPECT_EQ(plan.window, R(100, 10));  // 2 pages of 1 allocation beats 2 of 2
  EXPECT_THAT(plan.victims, ElementsAre(z));
}

TEST(ReclaimTest, NeverTakesPagesThatAreNotPreemptible) {
  Pool pool = MakePool({{0, 16}});
  Hold(pool, {R(7, 1)}, false);
  Hold(pool, {R(0, 2)}, true);
  auto plan = pool.PlanReclaim(Contig(9));
  EXPECT_THAT(plan, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(FailReasonOf(plan.status()), FailReason::kNoReclaim);
  ASSERT_OK_AND_ASSIGN(ReclaimPlan ok, pool.PlanReclaim(Contig(7)));
  EXPECT_EQ(ok.window, R(8, 7));  // free: cost 0 beats [0, 7)
}

TEST(ReclaimTest, HonoursAlignmentAndBoundary) {
  Pool pool = MakePool({{1, 40}});
  Hold(pool, {R(1, 40)}, true);
  Request r = Contig(4);
  r.alignment = 4 * kPs;
  r.boundary = 8 * kPs;
  ASSERT_OK_AND_ASSIGN(ReclaimPlan plan, pool.PlanReclaim(r));
  EXPECT_EQ(plan.window, R(4, 4));
  Request unaligned_tail = Contig(6);
  unaligned_tail.boundary = 8 * kPs;
  ASSERT_OK_AND_ASSIGN(plan, pool.PlanReclaim(unaligned_tail));
  EXPECT_EQ(plan.window, R(1, 6));
}

TEST(ReclaimTest, CommitFreesWholeVictims) {
  Pool pool = MakePool({{0, 32}});
  const AllocationId v = Hold(pool, {R(0, 4), R(20, 4)}, true);
  Hold(pool, {R(4, 16)}, false);
  Hold(pool, {R(24, 8)}, false);
  ASSERT_OK_AND_ASSIGN(ReclaimPlan plan, pool.PlanReclaim(Contig(2)));
  EXPECT_EQ(plan.window, R(0, 2));
  ASSERT_OK(pool.CommitReclaim(Contig(2), plan).status());
  EXPECT_EQ(pool.Find(v), nullptr);
  EXPECT_EQ(pool.free_pages(), PageCount(6));  // [2,4) and [20,24)
  ASSERT_OK(pool.Verify());
}

TEST(ReclaimTest, StalePlansAreRefused) {
  Pool pool = MakePool({{0, 8}});
  const AllocationId v = Hold(pool, {R(0, 8)}, true);
  ASSERT_OK_AND_ASSIGN(ReclaimPlan plan, pool.PlanReclaim(Contig(8)));
  ASSERT_OK(pool.Free(v));
  Hold(pool, {R(3, 1)}, false);
  EXPECT_THAT(pool.CommitReclaim(Contig(8), plan),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ReclaimPlan forged = plan;
  forged.victims.clear();
  EXPECT_THAT(pool.CommitReclaim(Contig(8), forged),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(pool.CommitReclaim(Contig(4), plan),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(pool.Verify());
}

TEST(ReclaimTest, AllocationsMadeNotPreemptibleAreNotVictims) {
  Pool pool = MakePool({{0, 8}});
  const AllocationId v = Hold(pool, {R(0, 8)}, true);
  ASSERT_OK(pool.SetPreemptible(v, false));
  EXPECT_EQ(FailReasonOf(pool.PlanReclaim(Contig(8)).status()),
            FailReason::kNoReclaim);
  ASSERT_OK(pool.SetPreemptible(v, true));
  EXPECT_OK(pool.PlanReclaim(Contig(8)));
  ASSERT_OK(pool.Verify());
  EXPECT_THAT(pool.SetPreemptible(999, true),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(ReclaimTest, NothingPreemptibleMeansNoReclaim) {
  Pool pool = MakePool({{0, 8}});
  Hold(pool, {R(0, 8)}, false);
  EXPECT_EQ(FailReasonOf(pool.PlanReclaim(Contig(1)).status()),
            FailReason::kNoReclaim);
}

// Reclaim revokes whole allocations: a window costs the total size of the
// allocations it touches, not their pages inside it.
TEST(ReclaimTest, CostIsTheWholeSizeOfTheRevokedAllocations) {
  // The trace of the issue: p4 [0,4) f1 [4,8) p1 [8] f2 [9,16); one page
  // aligned to 8 pages can go at 0 (revokes p4: 4 pages) or 8 (p1: 1 page).
  Pool pool = MakePool({{1 << 20, 16}});
  const uint64_t b = 1 << 20;
  Hold(pool, {R(b, 4)}, true);
  Hold(pool, {R(b + 4, 4)}, false);
  const AllocationId p1 = Hold(pool, {R(b + 8, 1)}, true);
  Hold(pool, {R(b + 9, 7)}, false);
  Request x = Contig(1);
  x.alignment = 8 * kPs;
  ASSERT_OK_AND_ASSIGN(ReclaimPlan plan, pool.PlanReclaim(x));
  EXPECT_EQ(plan.window, R(b + 8, 1));
  EXPECT_THAT(plan.victims, ElementsAre(p1));
  EXPECT_EQ(plan.reclaim_pages, PageCount(1));

  // One page of a 12-page allocation in the window costs 12; three pages of
  // a 3-page allocation cost 3.
  Pool other = MakePool({{0, 8}, {100, 16}});
  Hold(other, {R(0, 1)}, false);
  const AllocationId big = Hold(other, {R(1, 1), R(100, 11)}, true);
  Hold(other, {R(2, 1)}, false);
  const AllocationId small = Hold(other, {R(4, 3)}, true);
  Hold(other, {R(3, 1), R(7, 1)}, false);
  Hold(other, {R(111, 5)}, false);
  ASSERT_OK_AND_ASSIGN(plan, other.PlanReclaim(Contig(1)));
  EXPECT_EQ(plan.window, R(4, 1));
  EXPECT_THAT(plan.victims, ElementsAre(small));
  EXPECT_EQ(plan.reclaim_pages, PageCount(3));
  (void)big;
}

// Equal cost and victims: the lower freelist wins (a deviation from
// DESIGN.md's "then address order": the later freelists hold the scarce
// memory), then the lower address, whatever the segments' IOVAs.
TEST(ReclaimTest, TiesGoToTheLowerFreelistThenTheLowerAddress) {
  Pool pool = *Pool::Create({});
  for (auto [pfn, fl] :
       {std::pair<uint64_t, uint32_t>{0, 1}, {100, 0}, {200, 0}}) {
    SegmentSpec s;
    s.iova = pfn * kPs;
    s.pages = PageCount(4);
    s.freelist = fl;
    ASSERT_OK(pool.AddSegment(s));
  }
  const AllocationId in_freelist_1 = Hold(pool, {R(0, 4)}, true);
  const AllocationId lower = Hold(pool, {R(100, 4)}, true);
  const AllocationId higher = Hold(pool, {R(200, 4)}, true);
  ASSERT_OK_AND_ASSIGN(ReclaimPlan plan, pool.PlanReclaim(Contig(4)));
  EXPECT_EQ(plan.window, R(100, 4));
  EXPECT_THAT(plan.victims, ElementsAre(lower));
  // Cost and number come first: freelist 0 only has a window of two
  // victims now, freelist 1 one of one.
  ASSERT_OK(pool.Free(lower));
  ASSERT_OK(pool.Free(higher));
  Hold(pool, {R(100, 4)}, false);
  Hold(pool, {R(200, 2)}, true);
  Hold(pool, {R(202, 2)}, true);
  ASSERT_OK_AND_ASSIGN(ReclaimPlan next, pool.PlanReclaim(Contig(4)));
  EXPECT_EQ(next.window, R(0, 4));  // 4 pages, 1 victim, against 4 and 2
  EXPECT_THAT(next.victims, ElementsAre(in_freelist_1));
  // Equal everything within freelist 0: the lower address.
  ASSERT_OK(pool.Free(in_freelist_1));
  Hold(pool, {R(0, 4)}, false);
  ASSERT_OK_AND_ASSIGN(ReclaimPlan last, pool.PlanReclaim(Contig(2)));
  EXPECT_EQ(last.window, R(200, 2));
}

}  // namespace
}  // namespace physpool::pglist
