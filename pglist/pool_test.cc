// SPDX-License-Identifier: Apache-2.0
#include "pglist/pool.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/requests.h"
#include "pglist/testing/status_matchers.h"

namespace physpool::pglist {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::ElementsAre;
constexpr uint64_t kPs = testing::kTestPage;
using testing::Contig;
using testing::R;
using testing::Req;
using testing::Seg;

Pool MakePool(const std::vector<SegmentSpec>& segs, PoolOptions opts = {}) {
  Pool pool = *Pool::Create(opts);
  for (const auto& s : segs) EXPECT_OK(pool.AddSegment(s));
  return pool;
}

FailReason ReasonOf(const absl::StatusOr<Allocation>& a) {
  return FailReasonOf(a.status());
}

// Claims without syncing (a restart's many claims in a row) leave the
// search index to the next query: every later answer is the one a pool
// synced after each claim gives.
TEST(PoolTest, UnsyncedClaimsAnswerLaterQueriesAsSyncedOnesDo) {
  Pool synced = MakePool({Seg(0, 512), Seg(1024, 256)});
  Pool lazy = MakePool({Seg(0, 512), Seg(1024, 256)});
  for (uint64_t p = 0; p < 512; p += 3) {
    ASSERT_OK(synced.Claim({R(p, 1)}, false).status());
    ASSERT_OK(lazy.Claim({R(p, 1)}, false, /*sync=*/false).status());
  }
  ASSERT_OK(synced.Claim({R(1024, 100)}, true).status());
  ASSERT_OK(lazy.Claim({R(1024, 100)}, true, /*sync=*/false).status());
  EXPECT_EQ(lazy.Segments()[0].largest_free_run,
            synced.Segments()[0].largest_free_run);
  for (const Request& req :
       {Contig(2), Req(4), Contig(64), Req(200), Contig(120), Contig(2, 4)}) {
    absl::StatusOr<Allocation> a = synced.Allocate(req);
    absl::StatusOr<Allocation> b = lazy.Allocate(req);
    ASSERT_EQ(a.ok(), b.ok());
    if (a.ok()) {
      EXPECT_EQ(a->runs, b->runs);
    }
  }
  ASSERT_OK(synced.Verify());
  ASSERT_OK(lazy.Verify());
}

TEST(PoolTest, SimpleIsNextFitFromTheHintAndWrapsOnce) {
  Pool pool = MakePool({Seg(100, 16)});
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Req(4)));
  EXPECT_EQ(a.path, Path::kSimple);
  EXPECT_THAT(a.runs, ElementsAre(R(100, 4)));
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(Req(4)));
  EXPECT_THAT(b.runs, ElementsAre(R(104, 4)));
  ASSERT_OK(pool.Free(a.id));
  // Next fit: continues after b, not in the hole a left.
  ASSERT_OK_AND_ASSIGN(Allocation c, pool.Allocate(Req(4)));
  EXPECT_THAT(c.runs, ElementsAre(R(108, 4)));
  // Takes the last 4 pages, then wraps to the start.
  ASSERT_OK_AND_ASSIGN(Allocation d, pool.Allocate(Req(6)));
  EXPECT_THAT(d.runs, ElementsAre(R(100, 2), R(112, 4)));
  ASSERT_OK(pool.Verify());
}

// A failed simple request gives its pages back, but its hints stay where
// the seed's walk leaves them: at the limit of the last pass.
TEST(PoolTest, FailedSimpleRequestGivesPagesBackAndMovesHintsAsTheSeed) {
  Pool pool = MakePool({Seg(0, 16)});
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Req(2)));
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(Req(6)));
  ASSERT_OK(pool.Free(b.id));
  EXPECT_EQ(pool.Segments()[0].hint, Pfn(8));
  Request r = Req(5);
  r.high = 6 * kPs;  // pages [2, 6) are free in the window: 4 < 5
  auto got = pool.Allocate(r);
  EXPECT_EQ(ReasonOf(got), FailReason::kNoSpace);
  EXPECT_EQ(pool.free_pages(), PageCount(14));
  // Pass 1 from the hint (8) is empty, pass 2 runs from 0 to min(6, 8).
  EXPECT_EQ(pool.Segments()[0].hint, Pfn(6));
  ASSERT_OK(pool.Verify());

  // Refused before the walk (the window holds fewer pages than asked): the
  // hints move as if it had walked. From the segment's start, no wrap: the
  // hint goes to the window's end.
  Pool fresh = MakePool({Seg(0, 16)});
  r = Req(8);
  r.high = 4 * kPs + 1;
  EXPECT_THAT(fresh.Allocate(r), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(fresh.Segments()[0].hint, Pfn(0));  // invalid: no search at all
  EXPECT_EQ(ReasonOf(fresh.Allocate(Req(17))), FailReason::kNeverFits);
  EXPECT_EQ(fresh.Segments()[0].hint, Pfn(16));
  EXPECT_EQ(fresh.free_pages(), PageCount(16));
  ASSERT_OK(fresh.Verify());
  (void)a;
}

TEST(PoolTest, AlignmentAppliesToTheIovaNotTheSegmentOffset) {
  Pool pool = MakePool({Seg(3, 64)});  // base not aligned to anything
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(4, 8)));
  EXPECT_EQ(a.path, Path::kContig);
  EXPECT_THAT(a.runs, ElementsAre(R(8, 4)));
  EXPECT_EQ(pool.ToIova(a.runs[0].start) % (8 * kPs), 0u);
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(Contig(4, 8)));
  EXPECT_THAT(b.runs, ElementsAre(R(16, 4)));
}

TEST(PoolTest, BoundaryIsNeverCrossed) {
  Pool pool = MakePool({Seg(0, 64)});
  ASSERT_OK(pool.Allocate(Contig(6)).status());  // hint now at 6
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(4, 1, 8)));
  EXPECT_THAT(a.runs, ElementsAre(R(8, 4)));  // [6, 10) would cross 8
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(Contig(4, 1, 4)));
  EXPECT_THAT(b.runs, ElementsAre(R(12, 4)));
}

TEST(PoolTest, AlignmentAndBoundaryCombined) {
  Pool pool = MakePool({Seg(5, 100)});
  // Aligned to 2 pages, inside 8-page cells: [6, 12) crosses 8, so 8.
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(6, 2, 8)));
  EXPECT_THAT(a.runs, ElementsAre(R(8, 6)));
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(Contig(6, 2, 8)));
  EXPECT_THAT(b.runs, ElementsAre(R(16, 6)));
}

TEST(PoolTest, WindowCutsSegments) {
  Pool pool = MakePool({Seg(0, 64), Seg(64, 64)});
  Request r = Req(10);
  r.low = 60 * kPs;
  r.high = 70 * kPs;
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(r));
  // Two runs: one per segment, not merged across the segment border.
  EXPECT_THAT(a.runs, ElementsAre(R(60, 4), R(64, 6)));
  Request c = Contig(4);
  c.low = 30 * kPs + 1;  // pages start at or above low
  c.high = 40 * kPs - 1;
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(c));
  EXPECT_THAT(b.runs, ElementsAre(R(31, 4)));
  c.low = 36 * kPs;  // [36, 39) holds only 3 whole pages
  EXPECT_THAT(pool.Allocate(c), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PoolTest, ContigWrapsToTheSegmentStart) {
  Pool pool = MakePool({Seg(0, 16)});
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(4)));
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(Contig(10)));
  ASSERT_OK(pool.Free(a.id));
  // Hint at 14: only 2 pages after it; wraps and finds [0, 4).
  ASSERT_OK_AND_ASSIGN(Allocation c, pool.Allocate(Contig(3)));
  EXPECT_THAT(c.runs, ElementsAre(R(0, 3)));
}

TEST(PoolTest, FreelistsAreTriedInOrder) {
  Pool pool = MakePool({Seg(0, 16, /*freelist=*/1), Seg(100, 16, 0)});
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Req(10)));
  EXPECT_THAT(a.runs, ElementsAre(R(100, 10)));
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(Req(10)));
  EXPECT_THAT(b.runs, ElementsAre(R(0, 4), R(110, 6)));
}

TEST(PoolTest, BigFirstOrdersBySizeThenAddress) {
  PoolOptions o;
  o.strategy = Strategy::kBigFirst;
  Pool pool = MakePool({Seg(0, 16), Seg(100, 64), Seg(200, 64)}, o);
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Contig(8)));
  EXPECT_THAT(a.runs, ElementsAre(R(100, 8)));
  const auto segs = pool.Segments();
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(segs[0].avail.start, Pfn(100));
  EXPECT_EQ(segs[1].avail.start, Pfn(200));
  EXPECT_EQ(segs[2].avail.start, Pfn(0));
}

TEST(PoolTest, ReserveIsLeftFreeExceptForPrivilegedRequests) {
  PoolOptions o;
  o.reserve_pages = PageCount(8);
  Pool pool = MakePool({Seg(0, 32)}, o);
  ASSERT_OK(pool.Allocate(Req(24)).status());  // leaves exactly 8
  auto r = pool.Allocate(Req(1));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(ReasonOf(r), FailReason::kReserve);
  Request p = Req(1);
  p.privileged = true;
  EXPECT_OK(pool.Allocate(p));
  // More than all memory less the reserve can never fit unprivileged.
  auto never = pool.Allocate(Req(25));
  EXPECT_EQ(ReasonOf(never), FailReason::kNeverFits);
}

TEST(PoolTest, DrainedSegmentsTakeNoNewAllocationsAndRemoveNeedsEmpty) {
  Pool pool = MakePool({Seg(0, 8), Seg(100, 8)});
  const SegmentId first = pool.Segments()[0].id;
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Req(2)));
  EXPECT_THAT(a.runs, ElementsAre(R(0, 2)));
  ASSERT_OK(pool.DrainSegment(first));
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(Req(2)));
  EXPECT_THAT(b.runs, ElementsAre(R(100, 2)));
  EXPECT_EQ(pool.allocatable_free_pages(), PageCount(6));
  EXPECT_EQ(ReasonOf(pool.Allocate(Req(9))), FailReason::kNeverFits);
  EXPECT_EQ(ReasonOf(pool.Allocate(Req(7))), FailReason::kNoSpace);
  EXPECT_THAT(pool.RemoveSegment(first),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(pool.Free(a.id));  // frees still work while draining
  ASSERT_OK(pool.RemoveSegment(first));
  EXPECT_EQ(pool.Segments().size(), 1u);
  EXPECT_THAT(pool.RemoveSegment(first), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(pool.DrainSegment(77), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(pool.Verify());
}

TEST(PoolTest, DoubleFreesAndForeignRunsAreErrors) {
  Pool pool = MakePool({Seg(0, 16)});
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Req(4)));
  ASSERT_OK(pool.Free(a.id));
  EXPECT_THAT(pool.Free(a.id), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(pool.Free(12345), StatusIs(absl::StatusCode::kNotFound));
  // Claiming: outside any segment, overlapping itself, already in use.
  EXPECT_THAT(pool.Claim({R(40, 2)}, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(pool.Claim({R(14, 4)}, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(pool.Claim({R(2, 2), R(3, 2)}, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(Allocation c, pool.Claim({R(2, 2), R(8, 1)}, false));
  EXPECT_THAT(pool.Claim({R(3, 1)}, false),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(pool.Verify());
  // A segment refuses to free pages that are free or outside it.
  PhysSeg seg(0, Seg(0, 16), kPs);
  EXPECT_THAT(seg.Release(R(0, 1)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(seg.Release(R(15, 2)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  seg.Take(R(0, 4));
  EXPECT_THAT(seg.Release(R(2, 4)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_OK(seg.Release(R(0, 4)));
  EXPECT_EQ(seg.free_pages(), PageCount(16));
  ASSERT_OK(pool.Free(c.id));
}

TEST(PoolTest, AddSegmentValidates) {
  Pool pool = MakePool({Seg(100, 16)});
  SegmentSpec s = Seg(0, 4);
  s.iova = 100;  // not page aligned
  EXPECT_THAT(pool.AddSegment(s), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(pool.AddSegment(Seg(0, 0)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(pool.AddSegment(Seg(110, 16)),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(pool.AddSegment(Seg(90, 11)),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_OK(pool.AddSegment(Seg(90, 10)));  // adjacent is fine
  EXPECT_THAT(pool.AddSegment(Seg((uint64_t{1} << 52) - 2, 4)),
              StatusIs(absl::StatusCode::kInvalidArgument));  // past 2^64
  SegmentSpec bad_avail = Seg(500, 8);
  bad_avail.avail_begin = 6;
  bad_avail.avail_end = 4;
  EXPECT_THAT(pool.AddSegment(bad_avail),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Pool::Create(PoolOptions{1000, Strategy::kAddress, {}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PoolTest, AvailableRangeLimitsAllocation) {
  SegmentSpec s = Seg(0, 16);
  s.avail_begin = 4;
  s.avail_end = 12;
  Pool pool = MakePool({s});
  EXPECT_EQ(pool.total_pages(), PageCount(8));
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(Req(8)));
  EXPECT_THAT(a.runs, ElementsAre(R(4, 8)));
}

TEST(PoolTest, MultiRunsUseTheFewestRunsEachAligned) {
  Pool pool = MakePool({Seg(0, 32)});
  // Pin pages so the free stretches are [2, 6), [8, 16), [20, 22), [24, 32).
  ASSERT_OK(pool.Claim({R(0, 2), R(6, 2), R(16, 4), R(22, 2)}, false).status());
  Request r = Req(14);
  r.max_segments = 2;
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(r));
  EXPECT_EQ(a.path, Path::kMulti);
  EXPECT_THAT(a.runs, ElementsAre(R(8, 8), R(24, 6)));
  Request aligned = Req(6);
  aligned.alignment = 4 * kPs;
  aligned.max_segments = 3;
  // Left: [2, 6) and [20, 22) and [30, 32): aligned starts 4, 20 -> 2 + 2
  // pages, 30 is not aligned to 4.
  EXPECT_EQ(ReasonOf(pool.Allocate(aligned)), FailReason::kNoSpace);
  aligned.bytes = 4 * kPs;
  ASSERT_OK_AND_ASSIGN(Allocation b, pool.Allocate(aligned));
  EXPECT_THAT(b.runs, ElementsAre(R(4, 2), R(20, 2)));
  ASSERT_OK(pool.Verify());
}

TEST(PoolTest, ContigThatCannotEverFitSaysSo) {
  Pool pool = MakePool({Seg(0, 16), Seg(100, 16)});
  EXPECT_EQ(ReasonOf(pool.Allocate(Contig(20))), FailReason::kNeverFits);
  EXPECT_EQ(ReasonOf(pool.Allocate(Req(40))), FailReason::kNeverFits);
  ASSERT_OK(pool.Allocate(Contig(10)).status());
  ASSERT_OK(pool.Allocate(Contig(10)).status());
  auto frag = pool.Allocate(Contig(8));  // 12 free, no 8 in a row
  EXPECT_THAT(frag, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(ReasonOf(frag), FailReason::kNoSpace);
}

TEST(PoolTest, SegmentsFarAbove32BitPageNumbers) {
  // IOVA 2^50: page numbers above 2^32 (the seed's u_int arithmetic would
  // truncate them).
  const uint64_t base = uint64_t{1} << 38;
  Pool pool = MakePool({Seg(base, 64)});
  Request r = Contig(8, 8);
  r.low = base * kPs;
  r.high = (base + 64) * kPs;
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(r));
  EXPECT_THAT(a.runs, ElementsAre(R(base, 8)));
}

TEST(PoolTest, CountsPathsFailuresAndFallbacks) {
  Pool pool = MakePool({Seg(0, 16)});
  ASSERT_OK(pool.Allocate(Req(4)).status());
  ASSERT_OK(pool.Allocate(Contig(4)).status());
  EXPECT_THAT(pool.Allocate(Req(0)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  Request multi = Req(9);
  multi.max_segments = 3;
  EXPECT_FALSE(pool.Allocate(multi).ok());  // 8 free: no space
  const PoolStats& s = pool.stats();
  EXPECT_EQ(s.at(Path::kSimple).attempts, 2u);
  EXPECT_EQ(s.at(Path::kSimple).successes, 1u);
  EXPECT_EQ(
      s.at(Path::kSimple).failures[static_cast<int>(FailReason::kInvalid)], 1u);
  EXPECT_EQ(s.at(Path::kContig).attempts, 2u);
  EXPECT_EQ(s.at(Path::kContig).successes, 1u);
  EXPECT_EQ(
      s.at(Path::kContig).failures[static_cast<int>(FailReason::kNoSpace)], 1u);
  EXPECT_EQ(s.fallback(Path::kContig, Path::kMulti), 0u);  // refused up front
  multi.bytes = 8 * kPs;
  ASSERT_OK(pool.Claim({R(10, 1)}, false).status());
  multi.bytes = 7 * kPs;
  ASSERT_OK_AND_ASSIGN(Allocation m, pool.Allocate(multi));
  EXPECT_EQ(m.path, Path::kMulti);
  EXPECT_EQ(pool.stats().fallback(Path::kContig, Path::kMulti), 1u);
  EXPECT_EQ(pool.stats().at(Path::kMulti).successes, 1u);
}

TEST(PoolTest, SegmentInfoReportsUsage) {
  Pool pool = MakePool({Seg(0, 100)});
  ASSERT_OK(pool.Claim({R(10, 10), R(50, 1)}, false).status());
  const auto info = pool.Segments();
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].free_pages, PageCount(89));
  EXPECT_EQ(info[0].used_pages, PageCount(11));
  EXPECT_EQ(info[0].largest_free_run, PageCount(49));
  EXPECT_GT(pool.MetadataBytes(), 0u);
}

TEST(PoolTest, NumaFilterAndFreeRunsIn) {
  SegmentSpec a = Seg(0, 16), b = Seg(100, 16);
  b.numa = 1;
  Pool pool = MakePool({a, b});
  Request r = Req(4);
  r.numa = 1;
  ASSERT_OK_AND_ASSIGN(Allocation x, pool.Allocate(r));
  EXPECT_THAT(x.runs, ElementsAre(R(100, 4)));
  r.bytes = 13 * kPs;  // node 1 has 12 free pages, node 0 has 16
  EXPECT_EQ(ReasonOf(pool.Allocate(r)), FailReason::kNoSpace);
  r.numa = -1;
  EXPECT_OK(pool.Allocate(r));
  EXPECT_THAT(pool.FreeRunsIn(R(0, 16)), ElementsAre(R(13, 3)));
  EXPECT_THAT(pool.FreeRunsIn(R(100, 16)), ElementsAre(R(104, 12)));
  EXPECT_TRUE(pool.FreeRunsIn(R(50, 2)).empty());
}

TEST(PoolTest, UsageByFreelistAndNuma) {
  SegmentSpec a = Seg(0, 100, 0), b = Seg(200, 50, 1), c = Seg(300, 30, 1);
  b.numa = 1;
  c.numa = 1;
  Pool pool = MakePool({a, b, c});
  ASSERT_OK(pool.Claim({R(10, 10), R(210, 5), R(300, 30)}, false).status());
  const auto fl = pool.UsageByFreelist();
  ASSERT_EQ(fl.size(), 2u);
  EXPECT_EQ(fl.at(0).free_pages, PageCount(90));
  EXPECT_EQ(fl.at(0).largest_free_run, PageCount(80));
  EXPECT_EQ(fl.at(1).free_pages, PageCount(45));
  EXPECT_EQ(fl.at(1).used_pages, PageCount(35));
  EXPECT_EQ(fl.at(1).largest_free_run, PageCount(35));
  const auto numa = pool.UsageByNuma();
  ASSERT_EQ(numa.size(), 2u);
  EXPECT_EQ(numa.at(1).used_pages, PageCount(35));
}

// A run cap (the daemon's max_runs_per_lease): a simple request whose
// next-fit walk would give more runs takes the fewest runs instead; above
// the cap with no way to fit, RESOURCE_EXHAUSTED naming it; max_segments
// above the cap is invalid.
TEST(PoolTest, RunCapBoundsEveryAnswer) {
  Pool pool = MakePool({Seg(0, 32)});
  // Pages 0, 2, ..., 14 used: single free pages, then [15, 32).
  for (uint64_t p = 0; p < 16; p += 2) ASSERT_OK(pool.Claim({R(p, 1)}, false));
  Request r = Req(10);
  r.run_cap = 2;
  ASSERT_OK_AND_ASSIGN(Allocation a, pool.Allocate(r));
  EXPECT_EQ(a.path, Path::kMulti);
  EXPECT_THAT(a.runs, ElementsAre(R(15, 10)));
  EXPECT_EQ(pool.stats().fallback(Path::kSimple, Path::kMulti), 1u);
  Request too_many = Req(14);
  too_many.run_cap = 3;  // 14 free, but the 3 largest pieces hold 9
  auto failed = pool.Allocate(too_many);
  EXPECT_THAT(failed, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(std::string(failed.status().message()),
              ::testing::HasSubstr("max_runs_per_lease"));
  Request bad = Req(4);
  bad.run_cap = 2;
  bad.max_segments = 3;
  EXPECT_THAT(pool.Allocate(bad), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(pool.Verify());
}

}  // namespace
}  // namespace physpool::pglist
