// SPDX-License-Identifier: Apache-2.0
// Segment and freelist order (every placement) and the best-fit placement.
#include "pglist/placement.h"

#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/pool.h"
#include "pglist/testing/order_check.h"
#include "pglist/testing/reference_pool.h"
#include "pglist/testing/requests.h"
#include "pglist/testing/status_matchers.h"

namespace physpool::pglist {
namespace {

using ::testing::ElementsAre;
constexpr uint64_t kPs = testing::kTestPage;
using testing::Contig;
using testing::R;
using testing::Seg;

Pool MakePool(const std::vector<SegmentSpec>& segs,
              Placement placement = Placement::kNextFit) {
  PoolOptions opts;
  opts.placement = placement;
  Pool pool = *Pool::Create(opts);
  for (const auto& s : segs) EXPECT_OK(pool.AddSegment(s));
  return pool;
}

class OrderTest : public ::testing::TestWithParam<Placement> {};

// Issue 24's trace: 17 pages go to freelist 0 and are freed (hint 17); 24
// pages must go to freelist 0 again, across the hint, not to freelist 1.
TEST_P(OrderTest, IssueTraceStaysInFreelistZero) {
  Pool pool = MakePool({Seg(1048576, 66, /*freelist=*/1), Seg(1048658, 36, 0)},
                       GetParam());
  ASSERT_OK_AND_ASSIGN(Allocation x, pool.Allocate(Contig(17)));
  EXPECT_THAT(x.runs, ElementsAre(R(1048658, 17)));
  ASSERT_OK(pool.Free(x.id));
  ASSERT_OK_AND_ASSIGN(Allocation y, pool.Allocate(Contig(24)));
  EXPECT_THAT(y.runs, ElementsAre(R(1048658, 24)));
  ASSERT_OK(pool.Verify());
}

// Within a freelist: a run across the first segment's hint beats a whole
// free later segment.
TEST_P(OrderTest, EarlierSegmentOfTheSameFreelistFirst) {
  Pool pool = MakePool({Seg(0, 16), Seg(100, 16)}, GetParam());
  ASSERT_OK(pool.Claim({R(0, 2), R(12, 4)}, false).status());
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(6)));  // [2, 8)
  EXPECT_THAT(a.runs, ElementsAre(R(2, 6)));
  ASSERT_OK(pool.Free(a.id));  // hint 8: [2, 12) is free
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(Contig(8)));
  EXPECT_THAT(b.runs, ElementsAre(R(2, 8)));
}

// The multi path takes a later freelist's slots only when the earlier
// freelists cannot hold the request in max_segments runs.
TEST_P(OrderTest, MultiUsesLaterFreelistsOnlyWhenNeeded) {
  Pool pool =
      MakePool({Seg(0, 16, /*freelist=*/1), Seg(100, 16, 0)}, GetParam());
  // Freelist 1: free [0, 7) and [8, 9); freelist 0: [100, 103), [104, 107)
  // and [108, 110). No window of 8 anywhere.
  ASSERT_OK(pool.Claim({R(7, 1), R(9, 7)}, false).status());
  ASSERT_OK(pool.Claim({R(103, 1), R(107, 1), R(110, 6)}, false).status());
  Request r = Contig(8);
  r.max_segments = 3;
  // Fewest runs overall would be 7 + 3 pages, half of them in freelist 1.
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(r));
  EXPECT_EQ(a.path, Path::kMulti);
  EXPECT_THAT(a.runs, ElementsAre(R(100, 3), R(104, 3), R(108, 2)));
  // Freelist 0 is full now: freelist 1 serves.
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(r));
  EXPECT_THAT(b.runs, ElementsAre(R(0, 7), R(8, 1)));
}

// A request that accepts several runs is served in freelist 0 when it can
// be, in several runs, before a later freelist is searched for one run:
// freelist 0 has free stretches of 15 and 16 pages, freelist 1 is free.
TEST_P(OrderTest, SeveralRunsInFreelistZeroBeforeOneRunInFreelistOne) {
  Pool pool = MakePool({Seg(0, 32), Seg(100, 32, /*freelist=*/1)}, GetParam());
  ASSERT_OK(pool.Claim({R(15, 1)}, false).status());
  Request r = Contig(20, /*align_pages=*/2);  // 8 KiB
  r.max_segments = 2;
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(r));
  EXPECT_EQ(a.path, Path::kMulti);
  EXPECT_THAT(a.runs, ElementsAre(R(0, 4), R(16, 16)));
  // Counted as a contig failure and its fallback to multi.
  EXPECT_EQ(pool.stats().at(Path::kContig).attempts, 1u);
  EXPECT_EQ(pool.stats().fallback(Path::kContig, Path::kMulti), 1u);
  EXPECT_EQ(pool.stats().at(Path::kMulti).successes, 1u);
  // One run only: freelist 1.
  r.max_segments = 1;
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(r));
  EXPECT_EQ(b.path, Path::kContig);
  EXPECT_THAT(b.runs, ElementsAre(R(100, 20)));
  ASSERT_OK(pool.Verify());
}

// When several runs must use freelist 1, they take as few of its pages as
// they can: freelist 0 has slots of 3 and 3 pages, freelist 1 of 5 and 5;
// 8 pages in 2 runs are 3 pages of freelist 0 and 5 of freelist 1, not the
// fewest-runs-largest-first 5 + 3 of freelist 1.
TEST_P(OrderTest, SeveralRunsTakeTheFewestPagesOfTheLaterFreelist) {
  Pool pool = MakePool({Seg(0, 8), Seg(100, 12, /*freelist=*/1)}, GetParam());
  ASSERT_OK(pool.Claim({R(3, 1), R(7, 1)}, false).status());
  ASSERT_OK(pool.Claim({R(105, 1), R(111, 1)}, false).status());
  Request r = testing::Req(8);
  r.max_segments = 2;
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(r));
  EXPECT_EQ(a.path, Path::kMulti);
  EXPECT_THAT(a.runs, ElementsAre(R(0, 3), R(100, 5)));
  // Left: [4, 7) and [106, 111). 6 pages in 2 runs: the lower slot whole
  // and 3 pages of freelist 1.
  r.bytes = 6 * kPs;
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(r));
  EXPECT_THAT(b.runs, ElementsAre(R(4, 3), R(106, 3)));
  ASSERT_OK(pool.Verify());
}

// The largest number of lower slots that still lets the request fit, not
// as many as the run limit allows: freelist 0 slots of 1 and 1 page,
// freelist 1 of 4 and 4. 5 pages in 2 runs: 1 + 4; 8 pages: 4 + 4.
TEST_P(OrderTest, SeveralRunsUseAsManyLowerSlotsAsStillFit) {
  for (const auto& [pages, want] :
       std::vector<std::pair<uint64_t, std::vector<PageRun>>>{
           {5, {R(0, 1), R(100, 4)}}, {8, {R(100, 4), R(105, 4)}}}) {
    Pool pool = MakePool({Seg(0, 3), Seg(100, 9, /*freelist=*/1)}, GetParam());
    ASSERT_OK(pool.Claim({R(1, 1), R(104, 1)}, false).status());
    Request r = testing::Req(pages);
    r.max_segments = 2;
    ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(r));
    EXPECT_EQ(a.runs, want) << pages << " pages";
  }
}

INSTANTIATE_TEST_SUITE_P(Placements, OrderTest,
                         ::testing::Values(Placement::kNextFit,
                                           Placement::kBestFit));

// Free stretches [0, 10), [12, 16), [18, 24), [26, 32) of a 32-page segment.
Pool Stretches(Placement p) {
  Pool pool = MakePool({Seg(0, 32)}, p);
  EXPECT_OK(pool.Claim({R(10, 2), R(16, 2), R(24, 2)}, false).status());
  return pool;
}

TEST(BestFitTest, TakesTheShortestStretchThatFits) {
  Pool pool = Stretches(Placement::kBestFit);
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(4)));
  EXPECT_THAT(a.runs, ElementsAre(R(12, 4)));  // exact fit
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(Contig(5)));
  EXPECT_THAT(b.runs, ElementsAre(R(18, 5)));  // 6 pages, not 10
  ASSERT_OK_AND_ASSIGN(Allocation c, pool.Allocate(Contig(3)));
  EXPECT_THAT(c.runs, ElementsAre(R(26, 3)));  // 6 pages, the lower of ties
  // Next fit would have cut the 10-page stretch each time.
  Pool nf = Stretches(Placement::kNextFit);
  ASSERT_OK_AND_ASSIGN(Allocation d, nf.Allocate(Contig(4)));
  EXPECT_THAT(d.runs, ElementsAre(R(0, 4)));
}

TEST(BestFitTest, HonoursAlignmentAndBoundaryInsideAStretch) {
  Pool pool = Stretches(Placement::kBestFit);
  // 4 pages aligned to 4: [12, 16) fits exactly.
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(4, 4)));
  EXPECT_THAT(a.runs, ElementsAre(R(12, 4)));
  // 3 pages, no run across a multiple of 4: [18, 24) gives 20 (18 would
  // cross 20), shorter than [0, 10) and [26, 32) ties at 6: the lower.
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(Contig(3, 1, 4)));
  EXPECT_THAT(b.runs, ElementsAre(R(20, 3)));
  ASSERT_OK(pool.Verify());
}

TEST(BestFitTest, ComparesOnlyTheFirstCandidates) {
  // kBestFitCandidates stretches of 5 pages, then one of exactly 3.
  std::vector<PageRun> pins;
  for (int i = 0; i < kBestFitCandidates; ++i) pins.push_back(R(i * 6 + 5, 1));
  const uint64_t tail = kBestFitCandidates * 6;
  pins.push_back(R(tail + 3, 1));
  Pool pool = MakePool({Seg(0, tail + 4)}, Placement::kBestFit);
  ASSERT_OK(pool.Claim(pins, false).status());
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(3)));
  EXPECT_THAT(a.runs, ElementsAre(R(0, 3)));  // the exact fit is too far
}

// Pins every page of [0, end) but the `free` stretches (ascending).
std::vector<PageRun> Complement(const std::vector<PageRun>& free,
                                uint64_t end) {
  std::vector<PageRun> used;
  uint64_t at = 0;
  for (const PageRun& f : free) {
    if (f.start.value > at) used.push_back(R(at, f.start.value - at));
    at = f.end().value;
  }
  if (at < end) used.push_back(R(at, end - at));
  return used;
}

TEST(BestFitTest, StopsAfterSixteenStretchesOnceItHasACandidate) {
  // [0, 10) admits 2 pages aligned to 8; the next kBestFitStretches - 1
  // stretches of 4 pages hold no multiple of 8; then an exact fit at 272.
  std::vector<PageRun> free = {R(0, 10)};
  for (int k = 1; k < kBestFitStretches; ++k) free.push_back(R(16 * k + 2, 4));
  free.push_back(R(272, 2));
  Pool pool = MakePool({Seg(0, 280)}, Placement::kBestFit);
  ASSERT_OK(pool.Claim(Complement(free, 280), false).status());
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(2, 8)));
  EXPECT_THAT(a.runs, ElementsAre(R(0, 2)));
  // Without a candidate among them it goes on: complete.
  Pool none = MakePool({Seg(0, 280)}, Placement::kBestFit);
  free.erase(free.begin());
  ASSERT_OK(none.Claim(Complement(free, 280), false).status());
  ASSERT_OK_AND_ASSIGN(Allocation b, none.Allocate(Contig(2, 8)));
  EXPECT_THAT(b.runs, ElementsAre(R(272, 2)));
}

// Heavily fragmented segments (which the property test's programs rarely
// build): the pool's best fit and the naive model's pick the same run, for
// both placements, over random maps and constrained requests.
TEST(BestFitTest, MatchesTheModelOnFragmentedSegments) {
  std::mt19937_64 rng(24);
  int placed = 0;
  for (int t = 0; t < 50000; ++t) {
    const Placement placement =
        t % 2 ? Placement::kBestFit : Placement::kNextFit;
    PoolOptions opts;
    opts.placement = placement;
    Pool pool = *Pool::Create(opts);
    testing::ReferencePool model(opts);
    const SegmentSpec spec = Seg(rng() % 64, 64 + rng() % 900);
    ASSERT_OK(pool.AddSegment(spec).status());
    ASSERT_OK(model.AddSegment(spec).status());
    // Used runs of 1..8 pages, free gaps of 1..24 pages.
    std::vector<PageRun> used;
    const uint64_t base = spec.iova / kPs, end = base + spec.pages.value;
    for (uint64_t p = base + rng() % 8; p < end;) {
      const uint64_t n = std::min<uint64_t>(1 + rng() % 8, end - p);
      used.push_back(R(p, n));
      p += n + 1 + rng() % 24;
    }
    ASSERT_OK(pool.Claim(used, false).status());
    model.Claim(used, false);
    Request req;
    const uint64_t pages = 1 + rng() % 12;
    req.bytes = pages * kPs;
    req.alignment = kPs << (rng() % 5);
    if (rng() % 3 == 0) req.boundary = kPs << (4 + rng() % 3);
    if (req.boundary != 0 && req.boundary < req.bytes) req.boundary = 0;
    req.max_segments = 1;
    auto a = pool.Allocate(req);
    auto b = model.Allocate(req);
    ASSERT_EQ(a.ok(), b.ok()) << "trial " << t;
    if (a.ok()) {
      ASSERT_EQ(a->runs, b->runs) << "trial " << t;
      placed += placement == Placement::kBestFit;
    }
  }
  EXPECT_GT(placed, 12500);
}

TEST(BestFitTest, SimplePathAndHintAreTheSeeds) {
  Pool pool = Stretches(Placement::kBestFit);
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(5)));
  EXPECT_THAT(a.runs, ElementsAre(R(18, 5)));
  EXPECT_EQ(pool.Segments()[0].hint, Pfn(23));  // past the run, as next fit
  Request simple;
  simple.bytes = 3 * kPs;
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(simple));
  EXPECT_THAT(b.runs, ElementsAre(R(23, 1), R(26, 2)));  // next fit
}

// The property test's independent order check flags a run in a later
// segment, and a failure, while an earlier segment holds a window.
TEST(OrderCheckTest, FlagsLaterSegmentsAndFalseFailures) {
  Pool pool = MakePool({Seg(0, 16), Seg(100, 16, /*freelist=*/1)});
  auto c = Normalize(Contig(4), kPs);
  ASSERT_OK(c.status());
  const testing::OrderSnapshot before = testing::TakeOrderSnapshot(pool, *c);
  EXPECT_EQ(before.first_feasible, 0u);
  Allocation later;
  later.path = Path::kContig;
  later.runs = {R(100, 4)};
  EXPECT_THAT(testing::CheckOrder(pool, *c, before, later),
              physpool::testing::StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(testing::CheckOrder(pool, *c, before,
                                  FailWith(absl::StatusCode::kResourceExhausted,
                                           FailReason::kNoSpace, "none")),
              physpool::testing::StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(testing::CheckOrder(pool, *c, before,
                                  FailWith(absl::StatusCode::kResourceExhausted,
                                           FailReason::kNeverFits, "never")),
              physpool::testing::StatusIs(absl::StatusCode::kInternal));
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(4)));
  EXPECT_OK(testing::CheckOrder(pool, *c, before, a));
}

// ... and, for requests that accept several runs, an answer in a later
// freelist while the earlier ones could serve it in max_segments runs, and
// a multi answer that takes more of the later freelist than it must (the
// two reviewer cases of OrderTest, answered the old way).
TEST(OrderCheckTest, FlagsSeveralRunsInTheWrongFreelists) {
  {
    Pool pool = MakePool({Seg(0, 32), Seg(100, 32, /*freelist=*/1)});
    ASSERT_OK(pool.Claim({R(15, 1)}, false).status());
    Request r = Contig(20, 2);
    r.max_segments = 2;
    auto c = Normalize(r, kPs);
    ASSERT_OK(c.status());
    const testing::OrderSnapshot before = testing::TakeOrderSnapshot(pool, *c);
    Allocation one_run;
    one_run.path = Path::kContig;
    one_run.runs = {R(100, 20)};
    EXPECT_THAT(testing::CheckOrder(pool, *c, before, one_run),
                physpool::testing::StatusIs(absl::StatusCode::kInternal));
    ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(r));
    EXPECT_OK(testing::CheckOrder(pool, *c, before, a));
  }
  {
    Pool pool = MakePool({Seg(0, 8), Seg(100, 12, /*freelist=*/1)});
    ASSERT_OK(pool.Claim({R(3, 1), R(7, 1)}, false).status());
    ASSERT_OK(pool.Claim({R(105, 1), R(111, 1)}, false).status());
    Request r = testing::Req(8);
    r.max_segments = 2;
    auto c = Normalize(r, kPs);
    ASSERT_OK(c.status());
    const testing::OrderSnapshot before = testing::TakeOrderSnapshot(pool, *c);
    Allocation largest_first;
    largest_first.path = Path::kMulti;
    largest_first.runs = {R(100, 5), R(106, 3)};
    EXPECT_THAT(testing::CheckOrder(pool, *c, before, largest_first),
                physpool::testing::StatusIs(absl::StatusCode::kInternal));
    ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(r));
    EXPECT_OK(testing::CheckOrder(pool, *c, before, a));
  }
}

TEST(PlacementTest, Names) {
  EXPECT_EQ(ParsePlacement("nextfit"), Placement::kNextFit);
  EXPECT_EQ(ParsePlacement("bestfit"), Placement::kBestFit);
  EXPECT_EQ(ParsePlacement("firstfit"), std::nullopt);
  EXPECT_EQ(PlacementName(Placement::kBestFit), "bestfit");
  EXPECT_EQ(PlacementName(Placement::kNextFit), "nextfit");
}

}  // namespace
}  // namespace physpool::pglist
