// SPDX-License-Identifier: Apache-2.0
// LeaseViews (memory/lease_views.h): an ended view is quarantined (counted
// per tenant, the daemon's descriptor closed unless the kernel counts its
// references); a scan's evidence lets a view go only when nothing holds
// it — no named holder, no process the scan could not inspect, a scan that
// sees every process, no hand-out or pin since the snapshot — or, for a
// counted view, when the kernel counts no other reference; gates run once
// none of their allocations has a view, or their expiry once past due.
#include "server/memory/lease_views.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/fake_clock.h"
#include "server/core/turn_testing.h"

namespace physpool::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

const absl::Time kNow = absl::FromUnixSeconds(1700000000);

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

class LeaseViewsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (int fd : fds_) {
      if (IsOpen(fd)) close(fd);
    }
  }
  // A view of `alloc` for lease "l-<alloc>" of `tenant` with a real
  // descriptor (a memfd), not ended.
  LeaseViews::View& Add(pglist::AllocationId alloc, const std::string& tenant,
                        uint64_t bytes, bool counted = false) {
    LeaseViews::View v;
    v.alloc = alloc;
    v.info.id = "l-" + std::to_string(alloc);
    v.info.tenant = tenant;
    v.info.bytes = bytes;
    v.fd = memfd_create("view", MFD_CLOEXEC);
    fds_.push_back(v.fd);
    v.file = FileId{1, alloc};
    v.counted = counted;
    return views_.Add(std::move(v));
  }
  // Ends `alloc`'s view and scans with `found`: the views that went.
  std::vector<LeaseViews::View> Scan(
      const LeaseViews::Evidence& found,
      std::vector<const LeaseViews::View*>* newly_held = nullptr) {
    return views_.Apply(views_.ToScan(), found, newly_held);
  }
  // Runs gate callbacks in a turn.
  void RunAll(std::vector<LeaseViews::Then> ready) {
    turns_.Locked([&](Turn& t) {
      for (auto& f : ready) f(t);
    });
  }
  static Holder Process(pid_t pid) {
    Holder h;
    h.pid = pid;
    h.command = "tenant";
    h.has_fd = true;
    return h;
  }

  FakeClock clock_;
  TurnTesting turns_{&clock_};
  LeaseViews views_;
  std::vector<int> fds_;
};

TEST_F(LeaseViewsTest, ViewsAreFoundByAllocationAndByLease) {
  Add(1, "a", 4096);
  Add(2, "b", 8192);
  ASSERT_NE(views_.Find(2), nullptr);
  EXPECT_EQ(views_.Find(2)->info.tenant, "b");
  ASSERT_NE(views_.FindLease("l-1"), nullptr);
  EXPECT_EQ(views_.FindLease("l-1")->alloc, 1u);
  EXPECT_EQ(views_.Find(3), nullptr);
  EXPECT_EQ(views_.FindLease("l-3"), nullptr);
  EXPECT_TRUE(views_.AnyView({3, 2}));
  EXPECT_FALSE(views_.AnyView({3, 4}));
  EXPECT_EQ(views_.size(), 2u);
  EXPECT_FALSE(views_.has_quarantined()) << "live views are not quarantined";
}

TEST_F(LeaseViewsTest, AnEndQuarantinesTheViewAndClosesTheDaemonsFd) {
  const int fd = Add(1, "a", 4096).fd;
  Add(2, "a", 8192);
  Add(3, "b", 4096);
  views_.End(1, kNow);
  views_.End(2, kNow);
  views_.End(2, kNow + absl::Seconds(1));  // once only
  EXPECT_EQ(views_.quarantined(), 2u);
  EXPECT_EQ(views_.quarantined_bytes(), 12288u);
  EXPECT_EQ(views_.QuarantinedBytesOf("a"), 12288u);
  EXPECT_EQ(views_.QuarantinedBytesOf("b"), 0u);
  EXPECT_FALSE(IsOpen(fd));
  EXPECT_EQ(views_.Find(1)->fd, -1);
  EXPECT_EQ(views_.Find(2)->ended_at, kNow);
  EXPECT_THAT(views_.Quarantined(), SizeIs(2));
  views_.End(9, kNow);  // no view: nothing
  EXPECT_EQ(views_.quarantined(), 2u);
}

TEST_F(LeaseViewsTest, ACountedViewKeepsItsFdToReadTheCount) {
  const int fd = Add(1, "a", 4096, /*counted=*/true).fd;
  views_.End(1, kNow);
  EXPECT_TRUE(IsOpen(fd));
  ASSERT_EQ(views_.ToScan().files.size(), 1u);
  EXPECT_EQ(views_.ToScan().files.begin()->second.fd, fd);
}

TEST_F(LeaseViewsTest, OnlyEndedViewsWithNothingInFlightAreScanned) {
  Add(1, "a", 4096);
  Add(2, "a", 4096).pins = 1;
  Add(3, "a", 4096);
  views_.End(2, kNow);
  views_.End(3, kNow);
  const LeaseViews::ScanSet s = views_.ToScan();
  ASSERT_EQ(s.files.size(), 1u) << "1 is live, 2 is pinned";
  EXPECT_EQ(s.files.begin()->first, (FileId{1, 3}));
  EXPECT_EQ(s.files.begin()->second.alloc, 3u);
}

TEST_F(LeaseViewsTest, AViewNothingHoldsGoes) {
  const int fd = Add(1, "a", 4096, /*counted=*/true).fd;
  Add(2, "b", 8192);
  views_.End(1, kNow);
  views_.End(2, kNow);
  LeaseViews::Evidence nothing;
  nothing.others[FileId{1, 1}] = 0;
  std::vector<LeaseViews::View> gone = Scan(nothing);
  ASSERT_THAT(gone, SizeIs(2));
  EXPECT_EQ(views_.size(), 0u);
  EXPECT_EQ(views_.FindLease("l-1"), nullptr);
  EXPECT_EQ(views_.quarantined(), 0u);
  EXPECT_EQ(views_.quarantined_bytes(), 0u);
  EXPECT_EQ(views_.QuarantinedBytesOf("a"), 0u);
  EXPECT_FALSE(views_.has_quarantined());
  EXPECT_FALSE(IsOpen(fd)) << "the counted view's descriptor closed too";
}

TEST_F(LeaseViewsTest, AViewANamedProcessHoldsStays) {
  Add(1, "a", 4096);
  views_.End(1, kNow);
  LeaseViews::Evidence found;
  found.scan.held[FileId{1, 1}] = {Process(57)};
  std::vector<const LeaseViews::View*> newly;
  EXPECT_THAT(Scan(found, &newly), IsEmpty());
  ASSERT_THAT(newly, SizeIs(1));
  EXPECT_EQ(newly[0]->alloc, 1u);
  ASSERT_THAT(views_.Find(1)->holders, SizeIs(1));
  EXPECT_EQ(views_.Find(1)->holders[0].pid, 57);
  EXPECT_EQ(views_.unverified_bytes(), 0u) << "a named holder is verified";
  EXPECT_EQ(views_.quarantined(), 1u);
  // Still held at the next scan: not newly held.
  newly.clear();
  EXPECT_THAT(Scan(found, &newly), IsEmpty());
  EXPECT_THAT(newly, IsEmpty());
  // Let go: it goes.
  EXPECT_THAT(Scan(LeaseViews::Evidence{}), SizeIs(1));
}

TEST_F(LeaseViewsTest, UninspectedProcessesOrABlindScanKeepAViewAsHeld) {
  Add(1, "a", 4096);
  views_.End(1, kNow);
  LeaseViews::Evidence uninspected;
  Holder other = Process(99);
  other.uninspected = true;
  uninspected.scan.uninspected = {other};
  EXPECT_THAT(Scan(uninspected), IsEmpty());
  EXPECT_EQ(views_.unverified_bytes(), 4096u);
  EXPECT_TRUE(views_.Find(1)->holders[0].uninspected);

  LeaseViews::Evidence blind;
  blind.blind = "not in the host's pid namespace";
  EXPECT_THAT(Scan(blind), IsEmpty());
  ASSERT_THAT(views_.Find(1)->holders, SizeIs(1));
  EXPECT_EQ(views_.Find(1)->holders[0].command, blind.blind);
  EXPECT_EQ(views_.unverified_bytes(), 4096u);

  EXPECT_THAT(Scan(LeaseViews::Evidence{}), SizeIs(1));
  EXPECT_EQ(views_.unverified_bytes(), 0u);
}

TEST_F(LeaseViewsTest, AHandOutOrAPinSinceTheSnapshotKeepsTheView) {
  Add(1, "a", 4096);
  Add(2, "a", 4096);
  views_.End(1, kNow);
  views_.End(2, kNow);
  const LeaseViews::ScanSet snapshot = views_.ToScan();
  ++views_.Find(1)->handouts;  // handed out while the scan ran
  ++views_.Find(2)->pins;
  EXPECT_THAT(views_.Apply(snapshot, LeaseViews::Evidence{}, nullptr),
              IsEmpty());
  EXPECT_EQ(views_.size(), 2u);
}

TEST_F(LeaseViewsTest, ACountedViewIsDecidedByTheKernelsCount) {
  Add(1, "a", 4096, /*counted=*/true);
  views_.End(1, kNow);
  // References nobody named (a socket's queue, an importer): held.
  LeaseViews::Evidence counted;
  counted.others[FileId{1, 1}] = 2;
  EXPECT_THAT(Scan(counted), IsEmpty());
  ASSERT_THAT(views_.Find(1)->holders, SizeIs(1));
  EXPECT_EQ(views_.Find(1)->holders[0].pid, 0);
  EXPECT_EQ(views_.Find(1)->holders[0].references, 2);
  EXPECT_EQ(views_.unverified_bytes(), 4096u);
  // The count is down to the daemon's own: uninspected processes do not
  // matter for a view the kernel counts.
  LeaseViews::Evidence free;
  free.others[FileId{1, 1}] = 0;
  Holder other = Process(99);
  other.uninspected = true;
  free.scan.uninspected = {other};
  free.blind = "blind";
  EXPECT_THAT(Scan(free), SizeIs(1));
}

TEST_F(LeaseViewsTest, AGateRunsOnceNoneOfItsAllocationsHasAView) {
  Add(1, "a", 4096);
  Add(2, "a", 4096);
  std::vector<std::string> ran;
  views_.Gate({1, 2}, [&](Turn&) { ran.push_back("both"); });
  views_.Gate({7}, [&](Turn&) { ran.push_back("none"); });
  RunAll(views_.TakeReady(kNow));
  EXPECT_THAT(ran, ElementsAre("none"));
  EXPECT_THAT(views_.TakeReady(kNow), IsEmpty()) << "taken once";
  views_.End(1, kNow);
  views_.End(2, kNow);
  LeaseViews::Evidence one_held;
  one_held.scan.held[FileId{1, 2}] = {Process(5)};
  EXPECT_THAT(Scan(one_held), SizeIs(1));
  EXPECT_THAT(views_.TakeReady(kNow), IsEmpty()) << "2 still has a view";
  EXPECT_THAT(Scan(LeaseViews::Evidence{}), SizeIs(1));
  RunAll(views_.TakeReady(kNow));
  EXPECT_THAT(ran, ElementsAre("none", "both"));
}

TEST_F(LeaseViewsTest, AGatePastItsDeadlineRunsItsExpiryInstead) {
  Add(1, "a", 4096);
  std::vector<std::string> ran;
  views_.Gate(
      {1}, [&](Turn&) { ran.push_back("then 10"); }, kNow + absl::Seconds(10),
      [&](Turn&) { ran.push_back("expired 10"); });
  views_.Gate(
      {1}, [&](Turn&) { ran.push_back("then 5"); }, kNow + absl::Seconds(5),
      [&](Turn&) { ran.push_back("expired 5"); });
  views_.Gate({1}, [&](Turn&) { ran.push_back("then"); });  // no deadline
  EXPECT_EQ(views_.NextDeadline(), kNow + absl::Seconds(5));
  EXPECT_THAT(views_.TakeReady(kNow + absl::Seconds(5) - absl::Nanoseconds(1)),
              IsEmpty());
  RunAll(views_.TakeReady(kNow + absl::Seconds(5)));
  EXPECT_THAT(ran, ElementsAre("expired 5"));
  EXPECT_EQ(views_.NextDeadline(), kNow + absl::Seconds(10));
  RunAll(views_.TakeReady(kNow + absl::Hours(1)));
  EXPECT_THAT(ran, ElementsAre("expired 5", "expired 10"));
  EXPECT_FALSE(views_.NextDeadline().has_value())
      << "the gate without a deadline has no expiry";
  ASSERT_NE(views_.Find(1), nullptr) << "the view itself is untouched";
  // The view goes: the last gate runs its continuation.
  views_.End(1, kNow);
  EXPECT_THAT(Scan(LeaseViews::Evidence{}), SizeIs(1));
  RunAll(views_.TakeReady(kNow));
  EXPECT_THAT(ran, ElementsAre("expired 5", "expired 10", "then"));
}

}  // namespace
}  // namespace physpool::server
