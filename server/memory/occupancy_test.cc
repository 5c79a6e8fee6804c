// SPDX-License-Identifier: Apache-2.0
// The occupancy map (memory/occupancy.h) over a real pool: each segment as
// runs of one state each (free, used, preemptible, being zeroed) in address
// order, neighbours of one state merged; paged by (segment, IOVA) so that
// the pages together are exactly the unpaged map; NOT_FOUND for an unknown
// segment, INVALID_ARGUMENT for a page token naming none.
#include "server/memory/occupancy.h"

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/memory/testing/memory_parts.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using State = OccupancyState;

constexpr uint64_t kPage = MemoryParts::kPage;

struct Seg {
  State state;
  uint64_t first_page;  // from the segment's start
  uint64_t pages;
  bool operator==(const Seg& o) const {
    return state == o.state && first_page == o.first_page && pages == o.pages;
  }
};
void PrintTo(const Seg& r, std::ostream* os) {
  *os << "{" << static_cast<int>(r.state) << " @" << r.first_page << " +"
      << r.pages << "}";
}

class OccupancyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MemoryParts::Config c;
    c.segments = {{64 * kPage, 0, 0}, {32 * kPage, 0, 0}};
    m_ = std::make_unique<MemoryParts>(c);
    ASSERT_OK(m_->Start());
    segs_ = m_->c().pool.Segments();
  }
  pglist::PageRun At(int seg, uint64_t page, uint64_t pages) {
    return {segs_[seg].avail.start + pglist::PageCount(page),
            pglist::PageCount(pages)};
  }
  absl::StatusOr<OccupancyPage> Map(
      std::optional<uint32_t> segment = std::nullopt,
      std::optional<std::pair<uint32_t, uint64_t>> from = std::nullopt,
      size_t max_runs = 1000) {
    absl::StatusOr<OccupancyPage> page;
    m_->Run([&](Turn& t) {
      page = Occupancy(t, m_->c().pool, m_->c().segments, scrubbing_, segment,
                       from, max_runs);
    });
    return page;
  }
  // A segment's runs in pages from its start.
  std::vector<Seg> Runs(int seg, const std::vector<OccupancyRun>& runs) {
    const uint64_t base = m_->c().pool.ToIova(segs_[seg].avail.start);
    std::vector<Seg> out;
    for (const OccupancyRun& r : runs)
      out.push_back({r.state, (r.iova - base) / kPage, r.bytes / kPage});
    return out;
  }

  std::unique_ptr<MemoryParts> m_;
  std::vector<pglist::SegmentInfo> segs_;
  absl::flat_hash_set<pglist::AllocationId> scrubbing_;
};

TEST_F(OccupancyTest, AnEmptySegmentIsOneFreeRun) {
  ASSERT_OK_AND_ASSIGN(OccupancyPage page, Map());
  ASSERT_EQ(page.segments.size(), 2u);
  EXPECT_THAT(Runs(0, page.segments[0].second),
              ::testing::ElementsAre(Seg{State::kFree, 0, 64}));
  EXPECT_THAT(Runs(1, page.segments[1].second),
              ::testing::ElementsAre(Seg{State::kFree, 0, 32}));
  EXPECT_FALSE(page.next.has_value());
}

TEST_F(OccupancyTest, RunsOfOneStateEachInAddressOrder) {
  ASSERT_NE(m_->Claim({At(0, 2, 3)}), 0u);
  ASSERT_NE(m_->Claim({At(0, 5, 2)}), 0u);  // merges with the one before
  ASSERT_NE(m_->Claim({At(0, 10, 4)}, /*preemptible=*/true), 0u);
  const pglist::AllocationId zeroing = m_->Claim({At(0, 20, 1)});
  ASSERT_NE(zeroing, 0u);
  scrubbing_.insert(zeroing);
  ASSERT_OK_AND_ASSIGN(OccupancyPage page, Map());
  EXPECT_THAT(Runs(0, page.segments[0].second),
              ::testing::ElementsAre(
                  Seg{State::kFree, 0, 2}, Seg{State::kUsed, 2, 5},
                  Seg{State::kFree, 7, 3}, Seg{State::kPreemptible, 10, 4},
                  Seg{State::kFree, 14, 6}, Seg{State::kScrubbing, 20, 1},
                  Seg{State::kFree, 21, 43}));
  EXPECT_EQ(page.segments[0].first.scrubbing_pages, 1u);
  EXPECT_EQ(page.segments[0].first.info.used_pages.value, 10u);
}

TEST_F(OccupancyTest, AnAllocationWithRunsInTwoSegmentsShowsInBoth) {
  ASSERT_NE(m_->Claim({At(0, 60, 4), At(1, 0, 2)}), 0u);
  ASSERT_OK_AND_ASSIGN(OccupancyPage page, Map());
  EXPECT_THAT(Runs(0, page.segments[0].second),
              ::testing::ElementsAre(Seg{State::kFree, 0, 60},
                                     Seg{State::kUsed, 60, 4}));
  EXPECT_THAT(Runs(1, page.segments[1].second),
              ::testing::ElementsAre(Seg{State::kUsed, 0, 2},
                                     Seg{State::kFree, 2, 30}));
}

TEST_F(OccupancyTest, OneSegmentOnly) {
  ASSERT_OK_AND_ASSIGN(OccupancyPage page, Map(segs_[1].id));
  ASSERT_EQ(page.segments.size(), 1u);
  EXPECT_EQ(page.segments[0].first.info.id, segs_[1].id);
  EXPECT_THAT(Map(77).status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(OccupancyTest, APageEndsAtMaxRunsAndSaysWhereTheNextStarts) {
  ASSERT_NE(m_->Claim({At(0, 2, 3)}), 0u);
  ASSERT_NE(m_->Claim({At(0, 10, 4)}), 0u);
  // free [0,2) used [2,5) free [5,10) | used [10,14) free [14,64) | ...
  ASSERT_OK_AND_ASSIGN(OccupancyPage first, Map(std::nullopt, std::nullopt, 3));
  ASSERT_EQ(first.segments.size(), 1u);
  EXPECT_THAT(
      Runs(0, first.segments[0].second),
      ::testing::ElementsAre(Seg{State::kFree, 0, 2}, Seg{State::kUsed, 2, 3},
                             Seg{State::kFree, 5, 5}));
  ASSERT_TRUE(first.next.has_value());
  EXPECT_EQ(first.next->first, segs_[0].id);
  EXPECT_EQ(first.next->second,
            m_->c().pool.ToIova(segs_[0].avail.start) + 10 * kPage);

  ASSERT_OK_AND_ASSIGN(OccupancyPage second, Map(std::nullopt, first.next, 3));
  ASSERT_EQ(second.segments.size(), 2u);
  EXPECT_THAT(Runs(0, second.segments[0].second),
              ::testing::ElementsAre(Seg{State::kUsed, 10, 4},
                                     Seg{State::kFree, 14, 50}));
  EXPECT_THAT(Runs(1, second.segments[1].second),
              ::testing::ElementsAre(Seg{State::kFree, 0, 32}));
  EXPECT_FALSE(second.next.has_value()) << "the last page";
}

TEST_F(OccupancyTest, ThePagesTogetherAreTheWholeMap) {
  ASSERT_NE(m_->Claim({At(0, 1, 1)}), 0u);
  ASSERT_NE(m_->Claim({At(0, 3, 1)}, true), 0u);
  ASSERT_NE(m_->Claim({At(0, 63, 1), At(1, 0, 1)}), 0u);
  ASSERT_NE(m_->Claim({At(1, 8, 8)}), 0u);
  ASSERT_OK_AND_ASSIGN(OccupancyPage whole, Map());
  std::vector<OccupancyRun> expected;
  for (const auto& [seg, runs] : whole.segments)
    expected.insert(expected.end(), runs.begin(), runs.end());
  ASSERT_EQ(expected.size(), 10u);

  for (size_t per_page : {1, 2, 3, 4}) {
    SCOPED_TRACE(per_page);
    std::vector<OccupancyRun> got;
    std::optional<std::pair<uint32_t, uint64_t>> from;
    for (int pages = 0; pages < 20; ++pages) {
      ASSERT_OK_AND_ASSIGN(OccupancyPage page,
                           Map(std::nullopt, from, per_page));
      size_t n = 0;
      for (const auto& [seg, runs] : page.segments) {
        got.insert(got.end(), runs.begin(), runs.end());
        n += runs.size();
      }
      EXPECT_LE(n, per_page);
      from = page.next;
      if (!from) break;
    }
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].iova, expected[i].iova) << i;
      EXPECT_EQ(got[i].bytes, expected[i].bytes) << i;
      EXPECT_EQ(got[i].state, expected[i].state) << i;
    }
  }
}

TEST_F(OccupancyTest, APageTokenNamingNoSegmentIsInvalid) {
  EXPECT_THAT(
      Map(std::nullopt, std::make_pair(uint32_t{77}, uint64_t{0})).status(),
      StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace physpool::server
