// SPDX-License-Identifier: Apache-2.0
// Segments (memory/segments.h) on a SimSource and a real LeaseStore: the
// source's segments restored into the pool; a run shown with its IOVA,
// backing file and offset; drain and undrain; a hot add recorded before it
// is used (refused and undone when the store does not take it, or while
// shutting down); a hot remove of empty added segments only.
#include "server/memory/segments.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/memory/testing/memory_parts.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint64_t kPage = MemoryParts::kPage;
constexpr uint64_t kFirst = 256 << 10;   // 64 pages
constexpr uint64_t kSecond = 512 << 10;  // 128 pages

class SegmentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MemoryParts::Config c;
    c.segments = {{kFirst, 0, 0}, {kSecond, 1, 1}};
    c.store = true;
    c.store_retry = absl::Hours(1);  // no probe in these tests
    m_ = std::make_unique<MemoryParts>(c);
    ASSERT_OK(m_->Start());
  }
  Segments& segments() { return m_->c().segments; }
  pglist::Pool& pool() { return m_->c().pool; }
  const vfio::BackedSegment& Sim(size_t i) {
    return m_->source().segments()[i];
  }
  std::vector<uint32_t> PoolIds() {
    std::vector<uint32_t> ids;
    for (const auto& s : pool().Segments()) ids.push_back(s.id);
    return ids;
  }
  std::vector<int64_t> StoredIovas() {
    return m_->Ints("SELECT iova FROM segments ORDER BY iova");
  }

  std::unique_ptr<MemoryParts> m_;
};

TEST_F(SegmentsTest, TheSourcesSegmentsAreInThePool) {
  const std::vector<pglist::SegmentInfo> segs = pool().Segments();
  ASSERT_EQ(segs.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(pool().ToIova(segs[i].avail.start), Sim(i).spec.iova);
    EXPECT_EQ(segs[i].spec.pages, Sim(i).spec.pages);
    EXPECT_EQ(segs[i].spec.freelist, Sim(i).spec.freelist);
    EXPECT_FALSE(segs[i].draining);
  }
  EXPECT_EQ(pool().total_pages().value, (kFirst + kSecond) / kPage);
}

TEST_F(SegmentsTest, ARunIsShownWithItsBackingFileAndOffset) {
  const pglist::SegmentInfo second = pool().Segments()[1];
  const pglist::PageRun run{second.avail.start + pglist::PageCount(5),
                            pglist::PageCount(3)};
  LeaseRun r;
  m_->Run([&](Turn& t) { r = segments().ToLeaseRun(t, run); });
  EXPECT_EQ(r.iova, Sim(1).spec.iova + 5 * kPage);
  EXPECT_EQ(r.bytes, 3 * kPage);
  EXPECT_EQ(r.backing_path, Sim(1).path);
  EXPECT_EQ(r.backing_offset, Sim(1).file_offset + 5 * kPage);
  EXPECT_EQ(r.segment_id, second.id);
}

TEST_F(SegmentsTest, AnAllocationsRangesAreItsRunsInBytes) {
  const pglist::Pfn a = pool().Segments()[0].avail.start;
  const pglist::Pfn b = pool().Segments()[1].avail.start;
  const pglist::AllocationId id =
      m_->Claim({{a + pglist::PageCount(2), pglist::PageCount(1)},
                 {b, pglist::PageCount(4)}});
  ASSERT_NE(id, 0u);
  std::vector<vfio::MemorySource::ViewRange> ranges;
  m_->Run([&](Turn& t) { ranges = segments().RangesOf(t, id); });
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].iova, Sim(0).spec.iova + 2 * kPage);
  EXPECT_EQ(ranges[0].bytes, kPage);
  EXPECT_EQ(ranges[1].iova, Sim(1).spec.iova);
  EXPECT_EQ(ranges[1].bytes, 4 * kPage);
}

TEST_F(SegmentsTest, ASegmentsViewCountsOnlyItsOwnPagesBeingZeroed) {
  const pglist::Pfn a = pool().Segments()[0].avail.start;
  const pglist::Pfn b = pool().Segments()[1].avail.start;
  const pglist::AllocationId in_first = m_->Claim({{a, pglist::PageCount(3)}});
  const pglist::AllocationId in_second = m_->Claim({{b, pglist::PageCount(7)}});
  const pglist::AllocationId not_zeroed =
      m_->Claim({{b + pglist::PageCount(7), pglist::PageCount(2)}});
  ASSERT_NE(not_zeroed, 0u);
  const absl::flat_hash_set<pglist::AllocationId> scrubbing = {in_first,
                                                               in_second};
  SegmentView v0, v1;
  m_->Run([&](Turn& t) {
    v0 = segments().View(t, pool().Segments()[0], scrubbing);
    v1 = segments().View(t, pool().Segments()[1], scrubbing);
  });
  EXPECT_EQ(v0.scrubbing_pages, 3u);
  EXPECT_EQ(v1.scrubbing_pages, 7u);
  EXPECT_EQ(v0.backing_path, Sim(0).path);
  EXPECT_EQ(v1.backing_path, Sim(1).path);
}

TEST_F(SegmentsTest, DrainingChangesCapacityAndRetriesTheWaiters) {
  const uint32_t first = pool().Segments()[0].id;
  EXPECT_TRUE(m_->Run([&](Turn& t) {
    ASSERT_OK(segments().SetDraining(t, first, true));
  })) << "the waiting requests see the new capacity";
  EXPECT_TRUE(pool().Segments()[0].draining);
  // Nothing new lands in a draining segment.
  const pglist::AllocationId a = m_->Allocate(kSecond);
  ASSERT_NE(a, 0u);
  EXPECT_EQ(m_->Allocate(kPage), 0u) << "the other segment is full";
  EXPECT_TRUE(m_->Run(
      [&](Turn& t) { ASSERT_OK(segments().SetDraining(t, first, false)); }));
  EXPECT_FALSE(pool().Segments()[0].draining);
  EXPECT_NE(m_->Allocate(kPage), 0u);
}

TEST_F(SegmentsTest, DrainingAnUnknownSegmentFailsAndFreesNothing) {
  bool freed = m_->Run(
      [&](Turn& t) { EXPECT_FALSE(segments().SetDraining(t, 99, true).ok()); });
  EXPECT_FALSE(freed);
}

TEST_F(SegmentsTest, AHotAddIsRecordedThenUsable) {
  const int freed_before = m_->turns.freed();
  ASSERT_OK_AND_ASSIGN(pglist::SegmentId id, segments().Add(64 * kPage, 2, 0));
  EXPECT_EQ(m_->turns.freed(), freed_before + 1) << "waiters retried";
  ASSERT_EQ(m_->source().segments().size(), 3u);
  const vfio::BackedSegment& added = Sim(2);
  EXPECT_THAT(StoredIovas(),
              ElementsAre(static_cast<int64_t>(added.spec.iova)));
  const std::vector<pglist::SegmentInfo> segs = pool().Segments();
  ASSERT_EQ(segs.size(), 3u);
  bool found = false;
  for (const auto& s : segs) {
    if (s.id != id) continue;
    found = true;
    EXPECT_FALSE(s.draining) << "undrained once recorded";
    EXPECT_EQ(s.spec.pages.value, 64u);
    EXPECT_EQ(s.spec.freelist, 2u);
  }
  EXPECT_TRUE(found);
}

TEST_F(SegmentsTest, AHotAddTheStoreRefusesIsUndone) {
  ASSERT_OK(m_->FailStore("INSERT ON segments"));
  EXPECT_THAT(segments().Add(64 * kPage, 0, 0).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("the segment was not added")));
  EXPECT_EQ(pool().Segments().size(), 2u);
  EXPECT_EQ(m_->source().segments().size(), 2u) << "its backing removed";
  EXPECT_THAT(StoredIovas(), IsEmpty());
  EXPECT_FALSE(m_->c().durable.writable()) << "NOT_SERVING until a probe";
}

TEST_F(SegmentsTest, NoHotAddWhileShuttingDown) {
  m_->turns.accepting = false;
  EXPECT_THAT(segments().Add(64 * kPage, 0, 0).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(pool().Segments().size(), 2u);
  EXPECT_EQ(m_->source().segments().size(), 2u);
}

TEST_F(SegmentsTest, OnlyAnEmptyAddedSegmentIsRemoved) {
  const uint32_t configured = pool().Segments()[0].id;
  EXPECT_THAT(segments().Remove(configured),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("configuration file")));
  EXPECT_THAT(segments().Remove(99), StatusIs(absl::StatusCode::kNotFound));

  ASSERT_OK_AND_ASSIGN(pglist::SegmentId id, segments().Add(16 * kPage, 0, 0));
  const uint64_t iova = Sim(2).spec.iova;
  const pglist::AllocationId used =
      m_->Claim({{pglist::Pfn(iova / kPage), pglist::PageCount(1)}});
  ASSERT_NE(used, 0u);
  EXPECT_THAT(segments().Remove(id),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("still has 1 pages allocated")));
  m_->Run([&](Turn&) { ASSERT_OK(pool().Free(used)); });

  ASSERT_OK(segments().Remove(id));
  EXPECT_EQ(pool().Segments().size(), 2u);
  EXPECT_EQ(m_->source().segments().size(), 2u);
  EXPECT_THAT(StoredIovas(), IsEmpty());
  EXPECT_THAT(segments().Remove(id), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(SegmentsTest, ARemoveTheStoreRefusesLeavesTheSegmentInUse) {
  ASSERT_OK_AND_ASSIGN(pglist::SegmentId id, segments().Add(16 * kPage, 0, 0));
  ASSERT_OK(m_->FailStore("DELETE ON segments"));
  EXPECT_THAT(segments().Remove(id),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("the segment was not removed")));
  EXPECT_EQ(pool().Segments().size(), 3u);
  EXPECT_EQ(m_->source().segments().size(), 3u);
  EXPECT_THAT(StoredIovas(),
              ElementsAre(static_cast<int64_t>(Sim(2).spec.iova)));
  for (const auto& s : pool().Segments()) {
    EXPECT_FALSE(s.draining) << "undrained again: " << s.id;
  }
  EXPECT_FALSE(m_->c().durable.writable());
}

// After a restart the segments the store lists as added are removable;
// the others come from the configuration.
TEST(SegmentsRestoreTest, SegmentsAtAddedIovasCountAsAdded) {
  MemoryParts::Config c;
  c.segments = {{kFirst, 0, 0}, {kFirst, 0, 0}};
  c.added = {(uint64_t{1} << 32) + kFirst + kPage};  // the second one
  MemoryParts m(c);
  ASSERT_OK(m.Start());
  ASSERT_EQ(m.source().segments()[1].spec.iova, *c.added.begin());
  const std::vector<pglist::SegmentInfo> segs = m.c().pool.Segments();
  EXPECT_THAT(m.c().segments.Remove(segs[0].id),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_OK(m.c().segments.Remove(segs[1].id));
  EXPECT_EQ(m.c().pool.Segments().size(), 1u);
}

}  // namespace
}  // namespace physpool::server
