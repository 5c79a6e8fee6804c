// SPDX-License-Identifier: Apache-2.0
// The recycler (memory/recycle.h) over a SimSource and a real LeaseStore:
// freed memory waits for its views to go, is zeroed by the scrub thread,
// its scrub rows deleted durably, and only then freed, with one "memory
// freed" for the turn; a store that does not take the delete keeps the
// memory out until a probe succeeds; zeroing that fails keeps it out until
// a retry zeroes it; memory a device may still reach (stuck) is never
// zeroed nor freed; Zero hands zeroed memory to a continuation instead.
#include "server/memory/recycle.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/memory/testing/memory_parts.h"

namespace physpool::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint64_t kPage = MemoryParts::kPage;

class RecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MemoryParts::Config c;
    c.store = true;
    c.store_retry = absl::ZeroDuration();  // a probe is always due
    c.scrub_retry = absl::ZeroDuration();  // a failed job is due again
    m_ = std::make_unique<MemoryParts>(c);
    ASSERT_OK(m_->Start());
  }
  Recycler& recycler() { return m_->c().recycler; }
  // An allocation of `pages` holding 'x', with scrub row `row` recorded.
  pglist::AllocationId Dirty(uint64_t pages, int64_t row) {
    const pglist::AllocationId a = m_->Allocate(pages * kPage);
    EXPECT_NE(a, 0u);
    EXPECT_TRUE(m_->Fill(m_->RunsOf(a), 'x'));
    EXPECT_OK(m_->Sql(
        absl::StrCat("INSERT INTO scrubs(row, runs, lease, tenant) VALUES(",
                     row, ", '1:1', '', '')")));
    return a;
  }
  std::vector<int64_t> Rows() {
    return m_->Ints("SELECT row FROM scrubs ORDER BY row");
  }
  bool Scrubbing(pglist::AllocationId a) {
    bool s = false;
    m_->Run([&](Turn& t) { s = recycler().IsScrubbing(t, a); });
    return s;
  }

  std::unique_ptr<MemoryParts> m_;
};

TEST_F(RecycleTest, FreedMemoryIsZeroedRecordedThenFreed) {
  const pglist::AllocationId a = Dirty(8, 5);
  const std::vector<LeaseRun> runs = m_->RunsOf(a);
  const int wakes = m_->turns.scrubber_wakes;
  EXPECT_FALSE(m_->Run([&](Turn& t) { recycler().ScrubAndFree(t, {a}, {5}); }))
      << "nothing is free before it is zeroed";
  EXPECT_EQ(m_->turns.scrubber_wakes, wakes + 1);
  EXPECT_TRUE(Scrubbing(a));
  EXPECT_TRUE(m_->Allocated(a));
  EXPECT_EQ(m_->CountNot(runs, 'x'), 0u) << "not zeroed under the lock";

  const int freed = m_->turns.freed();
  EXPECT_EQ(m_->Scrub(), 1);
  EXPECT_FALSE(m_->Allocated(a));
  EXPECT_FALSE(Scrubbing(a));
  EXPECT_THAT(Rows(), IsEmpty()) << "its zeroing recorded";
  EXPECT_EQ(m_->turns.freed(), freed + 1) << "memory freed, once";
  EXPECT_EQ(m_->CountNot(runs, '\0'), 0u);
  EXPECT_EQ(m_->UsedPages(), 0u);
}

TEST_F(RecycleTest, SeveralAllocationsAreZeroedAsOneJobAndFreedTogether) {
  const pglist::AllocationId a = Dirty(4, 1);
  const pglist::AllocationId b = Dirty(2, 2);
  const pglist::AllocationId other = Dirty(1, 3);
  m_->Run([&](Turn& t) { recycler().ScrubAndFreeNow(t, {a, b}, {1, 2}); });
  const int freed = m_->turns.freed();
  EXPECT_EQ(m_->Scrub(), 1);
  EXPECT_FALSE(m_->Allocated(a));
  EXPECT_FALSE(m_->Allocated(b));
  EXPECT_TRUE(m_->Allocated(other));
  EXPECT_THAT(Rows(), ElementsAre(3));
  EXPECT_EQ(m_->turns.freed(), freed + 1);
  EXPECT_EQ(m_->UsedPages(), 1u);
}

TEST_F(RecycleTest, MemoryStaysOutUntilTheStoreTakesTheRecord) {
  const pglist::AllocationId a = Dirty(4, 7);
  ASSERT_OK(m_->FailStore("DELETE ON scrubs"));
  m_->Run([&](Turn& t) { recycler().ScrubAndFree(t, {a}, {7}); });
  const int freed = m_->turns.freed();
  EXPECT_EQ(m_->Scrub(), 1);
  EXPECT_TRUE(m_->Allocated(a)) << "zeroed, but not recorded: held";
  EXPECT_TRUE(Scrubbing(a));
  EXPECT_FALSE(m_->c().durable.writable());
  EXPECT_EQ(m_->turns.freed(), freed);
  EXPECT_THAT(Rows(), ElementsAre(7));

  m_->Probe();  // the store still refuses the delete: held again
  EXPECT_TRUE(m_->Allocated(a));
  ASSERT_OK(m_->HealStore());
  m_->Probe();
  EXPECT_FALSE(m_->Allocated(a));
  EXPECT_FALSE(Scrubbing(a));
  EXPECT_THAT(Rows(), IsEmpty());
  EXPECT_EQ(m_->turns.freed(), freed + 1);
  EXPECT_EQ(m_->Scrub(), 0) << "not zeroed again";
}

TEST_F(RecycleTest, ZeroingWaitsForTheViewsToGo) {
  const pglist::AllocationId a = Dirty(4, 1);
  const std::vector<LeaseRun> runs = m_->RunsOf(a);
  LeaseViews& views = m_->c().views;
  LeaseViews::View v;
  v.alloc = a;
  v.info.id = "l-1";
  v.info.tenant = "a";
  v.info.bytes = 4 * kPage;
  v.file = FileId{1, 1};
  views.Add(std::move(v));
  m_->Run([&](Turn& t) { recycler().ScrubAndFree(t, {a}, {1}); });
  EXPECT_TRUE(Scrubbing(a)) << "shown as being zeroed";
  EXPECT_EQ(m_->Scrub(), 0) << "a view still reaches it";
  EXPECT_EQ(m_->c().scrubber.backlog_pages(), 0u);
  EXPECT_EQ(m_->CountNot(runs, 'x'), 0u);

  // The lease ended, and a scan found nothing holding its view.
  m_->Run([&](Turn& t) {
    views.End(a, t.now());
    views.Apply(views.ToScan(), LeaseViews::Evidence{}, nullptr);
    m_->c().quarantine.RunReadyGates(t);
  });
  EXPECT_EQ(m_->Scrub(), 1);
  EXPECT_FALSE(m_->Allocated(a));
  EXPECT_THAT(Rows(), IsEmpty());
  EXPECT_EQ(m_->CountNot(runs, '\0'), 0u);
}

TEST_F(RecycleTest, ZeroingThatFailsKeepsTheMemoryOutUntilARetryZeroesIt) {
  const pglist::AllocationId a = Dirty(4, 1);
  m_->Run([&](Turn& t) { recycler().ScrubAndFree(t, {a}, {1}); });
  std::optional<ScrubJob> job;
  m_->Run([&](Turn& t) { job = recycler().Take(t); });
  ASSERT_TRUE(job.has_value());
  const int freed = m_->turns.freed();
  m_->Run([&](Turn& t) {
    recycler().Apply(t, *std::move(job), absl::InternalError("EIO"));
  });
  EXPECT_TRUE(m_->Allocated(a));
  EXPECT_TRUE(Scrubbing(a));
  EXPECT_EQ(recycler().errors(), 1u);
  EXPECT_EQ(m_->c().scrubber.failed_pages(), 4u);
  EXPECT_EQ(m_->turns.freed(), freed);
  EXPECT_THAT(Rows(), ElementsAre(1));

  EXPECT_EQ(m_->Scrub(), 1) << "offered again after scrub_retry";
  EXPECT_FALSE(m_->Allocated(a));
  EXPECT_EQ(m_->turns.freed(), freed + 1);
  m_->Run([&](Turn& t) { recycler().CountInlineZeroError(t); });
  EXPECT_EQ(recycler().errors(), 2u) << "the scrubber's and a lease end's";
}

TEST_F(RecycleTest, ZeroHandsTheZeroedMemoryToItsContinuation) {
  const pglist::AllocationId a = Dirty(4, 1);
  const std::vector<LeaseRun> runs = m_->RunsOf(a);
  std::vector<pglist::PageRun> pages = m_->c().pool.Find(a)->runs;
  int ran = 0;
  uint64_t dirty_then = ~uint64_t{0};
  m_->Run([&](Turn& t) {
    recycler().Zero(t, pages, [&](Turn&) {
      ++ran;
      dirty_then = m_->CountNot(runs, '\0');
    });
  });
  EXPECT_EQ(ran, 0);
  const int freed = m_->turns.freed();
  EXPECT_EQ(m_->Scrub(), 1);
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(dirty_then, 0u) << "zero before the continuation runs";
  EXPECT_TRUE(m_->Allocated(a)) << "a reclaim's: not the pool's";
  EXPECT_EQ(m_->turns.freed(), freed);
  EXPECT_THAT(Rows(), ElementsAre(1));
}

TEST_F(RecycleTest, ZeroNowZeroesARangeAtOnce) {
  const pglist::AllocationId a = Dirty(4, 1);
  const std::vector<LeaseRun> runs = m_->RunsOf(a);
  ASSERT_EQ(runs.size(), 1u);
  ASSERT_OK(recycler().ZeroNow(runs[0].iova, kPage));
  EXPECT_EQ(m_->CountNot(runs, 'x'), kPage) << "the first page only";
}

// Memory whose unmap from a tenant's devices failed: a device may still
// write to it, so it is neither zeroed nor freed — nor is what is recycled
// with it.
TEST(RecycleStuckTest, MemoryADeviceMayReachIsHeldBack) {
  FakeVfio vfio;
  ASSERT_OK(vfio.Start());
  MemoryParts m;
  ASSERT_OK(m.Start(vfio.source.get()));
  const pglist::AllocationId stuck = m.Allocate(8 * kPage);
  const pglist::AllocationId with = m.Allocate(2 * kPage);
  const pglist::AllocationId alone = m.Allocate(2 * kPage);
  std::vector<vfio::MemorySource::ViewRange> ranges;
  m.Run([&](Turn& t) { ranges = m.c().segments.RangesOf(t, stuck); });
  ASSERT_OK(m.c().devices.Map("a", ranges));
  const std::vector<LeaseRun> runs = m.RunsOf(stuck);
  ASSERT_TRUE(m.Fill(runs, 'd'));  // the device's data
  vfio.fake.mm = 2;                // UNMAP_DMA is cut short
  m.Run([&](Turn& t) { m.c().devices.Unmap(t, "a", stuck); });
  vfio.fake.mm = 1;

  m.Run([&](Turn& t) {
    m.c().recycler.ScrubAndFree(t, {stuck, with}, {});
    m.c().recycler.ScrubAndFree(t, {alone}, {});
  });
  EXPECT_EQ(m.Scrub(), 1) << "only the one without stuck memory";
  EXPECT_TRUE(m.Allocated(stuck));
  EXPECT_TRUE(m.Allocated(with));
  EXPECT_FALSE(m.Allocated(alone));
  bool both_shown = false;
  m.Run([&](Turn& t) {
    both_shown = m.c().recycler.IsScrubbing(t, stuck) &&
                 m.c().recycler.IsScrubbing(t, with);
  });
  EXPECT_TRUE(both_shown);
  EXPECT_EQ(m.CountNot(runs, 'd'), 0u) << "stuck memory is never zeroed";
}

}  // namespace
}  // namespace physpool::server
