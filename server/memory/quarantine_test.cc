// SPDX-License-Identifier: Apache-2.0
// The quarantine (memory/quarantine.h) on a SimSource's views and the real
// /proc scan, with child processes of this test as the tenants: a view is
// made at the first hand-out and shared by later ones; a pin keeps an
// ended view out of the scan until it is released; an ended view a child
// still holds stays (its holder named, its gate shut) and goes, file and
// all, once the child is gone; a restart takes back the views of live and
// ended leases and removes the others.
#include "server/memory/quarantine.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/memory/testing/memory_parts.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr uint64_t kPage = MemoryParts::kPage;

class QuarantineTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(/*views=*/true); }
  void TearDown() override {
    if (child_ > 0) Reap();
  }
  void Start(bool views) {
    MemoryParts::Config c;
    c.quarantine.per_lease_views = views;
    c.quarantine.scan_interval = absl::Hours(1);  // only ScanNow is due
    m_ = std::make_unique<MemoryParts>(c);
    ASSERT_OK(m_->Start());
    m_->Run([&](Turn& t) { q().Start(t); });
  }
  Quarantine& q() { return m_->c().quarantine; }
  LeaseViews& views() { return m_->c().views; }

  struct Leased {
    pglist::AllocationId a;
    LeaseInfo info;
  };
  // Lease `id` of `tenant` on `runs` (pages from the segment's start).
  Leased Lease(const std::string& id, const std::string& tenant,
               std::vector<std::pair<uint64_t, uint64_t>> runs) {
    std::vector<pglist::PageRun> pages;
    for (auto [first, n] : runs)
      pages.push_back(
          {m_->Base() + pglist::PageCount(first), pglist::PageCount(n)});
    const pglist::AllocationId a = m_->Claim(pages);
    EXPECT_NE(a, 0u);
    LeaseInfo info;
    info.id = id;
    info.tenant = tenant;
    info.runs = m_->RunsOf(a);
    for (const LeaseRun& r : info.runs) info.bytes += r.bytes;
    return {a, info};
  }
  absl::StatusOr<Quarantine::Handout> HandOut(pglist::AllocationId a,
                                              const LeaseInfo& info) {
    absl::StatusOr<Quarantine::Handout> h;
    m_->Run([&](Turn& t) { h = q().HandOut(t, a, info); });
    return h;
  }
  void End(pglist::AllocationId a) {
    m_->Run([&](Turn& t) { q().End(t, a); });
  }
  // One pass of the quarantine thread: ready gates, then a scan if due
  // (take in a turn, gather with none, apply in a turn), then the gates its
  // verdict opened. Whether a scan ran; its evidence in `found`.
  bool Pass(LeaseViews::Evidence* found = nullptr) {
    bool due = false;
    LeaseViews::ScanSet set;
    m_->Run([&](Turn& t) {
      q().RunReadyGates(t);
      due = q().ScanDue(t);
      if (due) set = q().TakeScan(t);
    });
    if (!due) return false;
    const LeaseViews::Evidence evidence = q().Gather(set);
    m_->Run([&](Turn& t) {
      q().Apply(t, set, evidence, absl::Milliseconds(1));
      q().RunReadyGates(t);
    });
    if (found != nullptr) *found = evidence;
    return true;
  }
  // A child holding what this process holds now, until Reap.
  void Fork() {
    child_ = fork();
    if (child_ == 0) {
      for (;;) pause();
    }
    ASSERT_GT(child_, 0);
  }
  void Reap() {
    kill(child_, SIGKILL);
    waitpid(child_, nullptr, 0);
    child_ = -1;
  }
  std::vector<std::string> ViewFiles() { return m_->source().ViewNames(); }

  std::unique_ptr<MemoryParts> m_;
  pid_t child_ = -1;
};

TEST_F(QuarantineTest, WithViewsOffNothingIsHandedOut) {
  Start(/*views=*/false);
  const Leased l = Lease("l-1", "a", {{0, 2}});
  EXPECT_THAT(HandOut(l.a, l.info).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(views().size(), 0u);
  EXPECT_THAT(ViewFiles(), IsEmpty());
}

TEST_F(QuarantineTest, TheFirstHandOutMakesTheViewAndLaterOnesShareIt) {
  const Leased l = Lease("l-1", "a", {{0, 2}, {10, 3}});
  ASSERT_OK_AND_ASSIGN(Quarantine::Handout first, HandOut(l.a, l.info));
  EXPECT_THAT(first.offsets, ElementsAre(0, 2 * kPage))
      << "the runs back to back";
  ASSERT_NE(first.pin, nullptr);
  EXPECT_THAT(ViewFiles(), ElementsAre("l-1"));
  struct stat st;
  ASSERT_EQ(fstat(first.fd, &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 5 * kPage);

  ASSERT_OK_AND_ASSIGN(Quarantine::Handout second, HandOut(l.a, l.info));
  EXPECT_NE(second.fd, first.fd) << "a descriptor of the caller's own";
  ASSERT_OK_AND_ASSIGN(FileId f1, FileIdOf(first.fd));
  ASSERT_OK_AND_ASSIGN(FileId f2, FileIdOf(second.fd));
  EXPECT_EQ(f1, f2) << "one view";
  EXPECT_EQ(views().size(), 1u);
  const LeaseViews::View* v = views().Find(l.a);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->file, f1);
  EXPECT_EQ(v->handouts, 2u);
  EXPECT_EQ(v->pins, 2);
  first.pin.reset();
  EXPECT_EQ(views().Find(l.a)->pins, 1);
  close(first.fd);
  close(second.fd);
}

TEST_F(QuarantineTest, AnEndedViewIsNotScannedWhileADescriptorIsInFlight) {
  const Leased l = Lease("l-1", "a", {{0, 1}});
  ASSERT_OK_AND_ASSIGN(Quarantine::Handout h, HandOut(l.a, l.info));
  close(h.fd);
  const int scans = m_->turns.scans;
  End(l.a);
  EXPECT_EQ(m_->turns.scans, scans + 1) << "looked at once";
  EXPECT_EQ(views().quarantined(), 1u);
  m_->Run([&](Turn& t) { EXPECT_TRUE(q().TakeScan(t).files.empty()); });
  // The receiver has it: the pin goes, and the scan looks again.
  h.pin.reset();
  EXPECT_EQ(m_->turns.scans, scans + 2);
  m_->Run([&](Turn& t) { EXPECT_THAT(q().TakeScan(t).files, SizeIs(1)); });
}

TEST_F(QuarantineTest, AnEndWithoutAViewIsNothing) {
  const Leased l = Lease("l-1", "a", {{0, 1}});
  const int scans = m_->turns.scans;
  End(l.a);
  EXPECT_EQ(m_->turns.scans, scans);
  m_->Run([&](Turn& t) {
    EXPECT_FALSE(q().ScanDue(t));
    EXPECT_EQ(q().NextWake(t), absl::InfiniteFuture());
  });
}

TEST_F(QuarantineTest, AViewAChildHoldsStaysUntilTheChildIsGone) {
  const Leased l = Lease("l-1", "a", {{4, 2}});
  ASSERT_OK_AND_ASSIGN(Quarantine::Handout h, HandOut(l.a, l.info));
  Fork();  // the tenant: holds the view's descriptor
  close(h.fd);
  h.pin.reset();
  int opened = 0;
  m_->Run([&](Turn&) { views().Gate({l.a}, [&](Turn&) { ++opened; }); });
  End(l.a);

  LeaseViews::Evidence found;
  ASSERT_TRUE(Pass(&found));
  if (!found.blind.empty()) GTEST_SKIP() << found.blind;
  const LeaseViews::View* v = views().Find(l.a);
  ASSERT_NE(v, nullptr) << "held: still quarantined";
  bool named = false;
  for (const Holder& holder : v->holders)
    named |= holder.pid == child_ && holder.has_fd;
  EXPECT_TRUE(named) << Describe(v->holders);
  EXPECT_EQ(q().Quarantined(*v).quarantine->holders.size(), v->holders.size());
  EXPECT_EQ(opened, 0);
  EXPECT_THAT(ViewFiles(), ElementsAre("l-1"));
  EXPECT_FALSE(Pass()) << "the next scan is a scan_interval away";

  Reap();
  m_->Run([&](Turn& t) { q().ScanNow(t); });
  ASSERT_TRUE(Pass(&found));
  if (!found.scan.uninspected.empty()) {
    // Processes this one may not read may hold it too: fail closed.
    EXPECT_NE(views().Find(l.a), nullptr);
    GTEST_SKIP() << "uninspected processes: "
                 << Describe(found.scan.uninspected);
  }
  EXPECT_EQ(views().Find(l.a), nullptr);
  EXPECT_EQ(views().quarantined(), 0u);
  EXPECT_THAT(ViewFiles(), IsEmpty()) << "the source destroyed it";
  EXPECT_EQ(opened, 1) << "its gate ran, once";
  Quarantine::Figures f;
  m_->Run([&](Turn& t) { f = q().figures(t); });
  EXPECT_EQ(f.scans, 2u);
  EXPECT_GT(f.last_processes, 0);
}

TEST_F(QuarantineTest, RestoreTakesBackTheViewsOfLiveAndEndedLeases) {
  const Leased live = Lease("l-live", "a", {{0, 2}});
  const Leased ended = Lease("l-ended", "b", {{8, 3}});
  const Leased stray = Lease("l-stray", "c", {{16, 1}});
  for (const Leased* lease : {&live, &ended, &stray}) {
    std::vector<vfio::MemorySource::ViewRange> ranges;
    for (const LeaseRun& r : lease->info.runs)
      ranges.push_back({r.iova, r.bytes});
    ASSERT_OK_AND_ASSIGN(int fd,
                         m_->source().CreateView(lease->info.id, ranges));
    close(fd);  // the previous daemon is gone
  }
  ASSERT_THAT(ViewFiles(), SizeIs(3));
  m_->Run([&](Turn& t) {
    q().Restore(
        t,
        [&](const std::string& name)
            -> std::optional<std::pair<pglist::AllocationId, LeaseInfo>> {
          if (name == "l-live") return std::make_pair(live.a, live.info);
          return std::nullopt;
        },
        {{"l-ended", {ended.a, "b"}}});
  });
  EXPECT_THAT(ViewFiles(), ElementsAre("l-ended", "l-live"))
      << "a view of no lease is removed";
  EXPECT_EQ(views().size(), 2u);
  const LeaseViews::View* l = views().FindLease("l-live");
  ASSERT_NE(l, nullptr);
  EXPECT_FALSE(l->ended);
  EXPECT_EQ(l->alloc, live.a);
  EXPECT_EQ(l->info.tenant, "a");
  EXPECT_GE(l->fd, 0) << "the daemon's reference to a live view";
  const LeaseViews::View* e = views().FindLease("l-ended");
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->ended);
  EXPECT_EQ(e->alloc, ended.a);
  EXPECT_EQ(e->info.tenant, "b");
  EXPECT_EQ(e->info.bytes, 3 * kPage);
  ASSERT_THAT(e->info.runs, SizeIs(1));
  EXPECT_EQ(e->info.runs[0].iova, ended.info.runs[0].iova);
  EXPECT_EQ(views().QuarantinedBytesOf("b"), 3 * kPage);
  m_->Run([&](Turn& t) { EXPECT_TRUE(q().ScanDue(t)) << "looked at soon"; });
}

}  // namespace
}  // namespace physpool::server
