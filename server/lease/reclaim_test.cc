// SPDX-License-Identifier: Apache-2.0
// Reclaim (lease/reclaim.h): preemptible victims end at once (PREEMPTED,
// with the grace period as their deadline); once the grace period is over
// and their ends are durable their memory is zeroed and becomes the
// requester's lease — or comes back to the pool if the reclaim is
// abandoned, cancelled, too late or over quota by then.
#include "server/lease/reclaim.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/lease/testing/parts_fixture.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Kind = LeaseEventInfo::Kind;

constexpr uint64_t kPage = LeaseParts::kPage;
constexpr uint64_t kAll = LeaseParts::kSegmentBytes;  // 256 pages

class ReclaimTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(); }
  void Build() {
    config_.options.reclaim_grace = absl::Milliseconds(200);
    config_.options.store_retry = absl::ZeroDuration();
    h_ = std::make_unique<LeaseParts>(config_);
    ASSERT_OK(h_->Start());
    h_->Watch("b");
  }
  // Tenant b's preemptible lease of `bytes`, with a mark in its memory.
  LeaseInfo Victim(uint64_t bytes = kAll) {
    AllocateParams p = LeaseParts::Params(bytes);
    p.req.preemptible = true;
    absl::StatusOr<LeaseInfo> l = h_->Allocate("b", p);
    EXPECT_OK(l.status());
    if (!l.ok()) return {};
    EXPECT_TRUE(h_->WriteFirstByte(*l, 'x'));
    return *l;
  }
  // Tenant a's request that may reclaim; its handle.
  uint64_t Reclaim(std::shared_ptr<Reply> r, uint64_t bytes = kAll,
                   absl::Duration timeout = absl::Seconds(60)) {
    AllocateParams p = LeaseParts::Params(bytes);
    p.may_reclaim = true;
    const uint64_t handle = h_->Admit("a", p, r, timeout);
    EXPECT_EQ(h_->parts().reclaims.size(), 1u);
    return handle;
  }
  // Past the grace period: the maintenance thread, then the zeroing.
  void PastGrace() {
    h_->clock.Advance(h_->options().reclaim_grace);
    h_->Maintain();
    EXPECT_EQ(h_->Scrub(), 1);
  }

  LeaseParts::Config config_;
  std::unique_ptr<LeaseParts> h_;
};

TEST_F(ReclaimTest, AVictimIsPreemptedAtOnceWithTheGracePeriodAsDeadline) {
  const LeaseInfo victim = Victim();
  const absl::Time start = h_->clock.Now();
  auto r = std::make_shared<Reply>();
  Reclaim(r);
  EXPECT_EQ(h_->parts().lessor.Find(victim.id), nullptr);
  const Lessor::Ended* ended = h_->parts().lessor.FindEnded(victim.id);
  ASSERT_NE(ended, nullptr);
  EXPECT_EQ(ended->how, "preempted");
  ASSERT_THAT(h_->Kinds("b"), ElementsAre(Kind::kPreempted));
  const LeaseEventInfo& e = h_->events["b"][0];
  EXPECT_EQ(e.lease_id, victim.id);
  EXPECT_THAT(e.reason, HasSubstr("reclaimed for tenant \"a\""));
  EXPECT_EQ(e.deadline, start + h_->options().reclaim_grace);
  EXPECT_EQ(h_->parts().ender.counters().revocations.at("preempted"), 1u);
  EXPECT_EQ(h_->parts().ender.counters().reclaimed_bytes, kAll);
  EXPECT_FALSE(r->answered());
  // Its tenant's devices may still write: nothing is zeroed or handed over
  // before the grace period ends.
  h_->clock.Advance(h_->options().reclaim_grace - absl::Milliseconds(1));
  h_->Maintain();
  EXPECT_EQ(h_->Scrub(), 0);
  EXPECT_FALSE(r->answered());
  EXPECT_EQ(h_->ReadFirstByte(victim), 'x');
}

TEST_F(ReclaimTest, AfterTheGracePeriodTheZeroedMemoryIsTheRequestersLease) {
  const LeaseInfo victim = Victim();
  auto r = std::make_shared<Reply>();
  Reclaim(r);
  PastGrace();
  ASSERT_OK(r->value.status());
  EXPECT_EQ(r->calls, 1);
  const LeaseInfo& lease = *r->value;
  EXPECT_EQ(lease.tenant, "a");
  EXPECT_EQ(lease.path, "aggressive");
  EXPECT_EQ(lease.bytes, kAll);
  ASSERT_EQ(lease.runs.size(), 1u);
  EXPECT_EQ(lease.runs[0].iova, victim.runs[0].iova);
  EXPECT_EQ(h_->ReadFirstByte(lease), 0) << "the victim's bytes were zeroed";
  const Lessor::Lease* live = h_->parts().lessor.Find(lease.id);
  ASSERT_NE(live, nullptr);
  EXPECT_EQ(live->state, Lessor::State::kLive);
  EXPECT_EQ(h_->parts().reclaims.size(), 0u);
  EXPECT_EQ(h_->UsedPages(), kAll / kPage);
  EXPECT_OK(h_->parts().pool.Verify());
}

// Issue 25: the grant of a reclaim tells the maintenance thread of the new
// lease's deadline (its EXPIRING warning), as any grant does. Before, the
// thread slept on and the warning came late.
TEST_F(ReclaimTest, AReclaimsGrantWakesTheMaintenanceThread) {
  Victim();
  auto r = std::make_shared<Reply>();
  Reclaim(r);
  h_->clock.Advance(h_->options().reclaim_grace);
  h_->Maintain();
  int wakes = 0;
  {
    // The zeroing ends (its turn submits the grant's store write); the
    // write is applied when this scope ends, and its completion grants.
    Committer::Scope hold(&h_->parts().committer);
    EXPECT_EQ(h_->Scrub(), 1);
    EXPECT_FALSE(r->answered());
    wakes = h_->turns.maintenance_wakes;
  }
  ASSERT_OK(r->value.status());
  EXPECT_EQ(h_->turns.maintenance_wakes, wakes + 1);
  EXPECT_EQ(h_->parts().lessor.NextDeadline(),
            r->value->expires - h_->options().expiring_warning);
}

TEST_F(ReclaimTest, TheVictimsEndsMustBeDurableBeforeTheirMemoryIsZeroed) {
  config_.store = true;
  Build();
  Victim();
  ASSERT_OK(h_->FailStore("DELETE ON leases"));
  auto r = std::make_shared<Reply>();
  Reclaim(r);
  EXPECT_FALSE(h_->parts().durable.writable());
  h_->clock.Advance(absl::Seconds(1));
  h_->Maintain();  // a probe succeeds, the end is refused again
  EXPECT_FALSE(h_->parts().durable.writable());
  EXPECT_EQ(h_->Scrub(), 0);
  EXPECT_FALSE(r->answered());
  // The store heals: the probe succeeds, the end is written again.
  ASSERT_OK(h_->HealStore());
  h_->Maintain();
  EXPECT_TRUE(h_->parts().durable.writable());
  h_->Maintain();
  EXPECT_EQ(h_->Scrub(), 1);
  ASSERT_OK(r->value.status());
  EXPECT_EQ(r->value->path, "aggressive");
}

TEST_F(ReclaimTest, AbandonAnswersAndGivesEveryPageBack) {
  Victim(kAll / 2);  // the other half of the window is free, held
  auto r = std::make_shared<Reply>();
  const uint64_t handle = Reclaim(r, kAll);
  EXPECT_EQ(h_->UsedPages(), kAll / kPage);
  h_->Run([&](Turn& t) {
    h_->parts().reclaim.Abandon(t, handle,
                                absl::DeadlineExceededError("too late"));
  });
  EXPECT_THAT(r->value,
              StatusIs(absl::StatusCode::kDeadlineExceeded, "too late"));
  EXPECT_EQ(h_->parts().reclaims.size(), 0u);
  EXPECT_EQ(h_->UsedPages(), kAll / 2 / kPage);  // the victim, to zero
  EXPECT_EQ(h_->Scrub(), 1);
  EXPECT_EQ(h_->UsedPages(), 0u);
  EXPECT_EQ(r->calls, 1);
  EXPECT_EQ(h_->parts().lessor.size(), 0u);
}

TEST_F(ReclaimTest, AReclaimPastItsDeadlineGivesTheMemoryBack) {
  Victim();
  auto r = std::make_shared<Reply>();
  Reclaim(r, kAll, absl::Seconds(1));
  h_->clock.Advance(absl::Seconds(1) + absl::Milliseconds(1));
  h_->Maintain();
  EXPECT_EQ(h_->Scrub(), 1);
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(h_->parts().lessor.size(), 0u);
  EXPECT_EQ(h_->UsedPages(), 0u);
  // The wait was observed once, when it ended.
  EXPECT_EQ(h_->parts().wait_seconds.count, 1u);
}

TEST_F(ReclaimTest, ACancelledReclaimIsAnsweredAtOnceAndGrantsNothing) {
  Victim();
  auto r = std::make_shared<Reply>();
  const uint64_t handle = Reclaim(r);
  h_->Run([&](Turn& t) { h_->parts().waiting.Cancel(t, handle); });
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kCancelled));
  // No longer counted against the tenant's quota.
  EXPECT_EQ(h_->parts().reclaims.Pending("a").bytes, 0u);
  PastGrace();
  EXPECT_EQ(r->calls, 1);
  EXPECT_EQ(h_->parts().lessor.size(), 0u);
  EXPECT_EQ(h_->parts().reclaims.size(), 0u);
  EXPECT_EQ(h_->UsedPages(), 0u);
}

// A cancel that comes while the reclaim's grant is being stored (the commit
// runs without the pool's lock) cannot stop the grant, and nobody is left
// to hear of the lease: it is released at once, not held until its TTL
// against the tenant's quota.
TEST_F(ReclaimTest, AReclaimCancelledWhileItsGrantIsStoredReleasesTheLease) {
  Victim();
  auto r = std::make_shared<Reply>();
  const uint64_t handle = Reclaim(r);
  h_->clock.Advance(h_->options().reclaim_grace);
  h_->Maintain();
  {
    // The zeroing ends and its turn submits the grant's store write,
    // applied when this scope ends; the cancel comes in between.
    Committer::Scope hold(&h_->parts().committer);
    EXPECT_EQ(h_->Scrub(), 1);
    h_->turns.Locked([&](Turn& t) { h_->parts().waiting.Cancel(t, handle); });
    EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kCancelled));
  }
  h_->Scrub();  // the released lease's memory, if it was not zeroed inline
  EXPECT_EQ(r->calls, 1);
  EXPECT_EQ(h_->parts().reclaims.size(), 0u);
  EXPECT_EQ(h_->parts().lessor.size(), 0u);
  EXPECT_EQ(h_->parts().lessor.Usage("a").leases, 0u);
  EXPECT_EQ(h_->UsedPages(), 0u);
  EXPECT_OK(h_->parts().pool.Verify());
}

// An abandoned reclaim's wait ends there: observed once, like a finished
// one's.
TEST_F(ReclaimTest, AnAbandonedReclaimsWaitIsObservedOnce) {
  Victim();
  auto r = std::make_shared<Reply>();
  const uint64_t handle = Reclaim(r);
  h_->clock.Advance(absl::Milliseconds(50));
  h_->Run([&](Turn& t) {
    h_->parts().reclaim.Abandon(t, handle,
                                absl::UnavailableError("views still held"));
  });
  EXPECT_EQ(h_->parts().wait_seconds.count, 1u);
  EXPECT_DOUBLE_EQ(h_->parts().wait_seconds.sum, 0.05);
}

TEST_F(ReclaimTest, AReclaimOverQuotaWhenItEndsGivesTheMemoryBack) {
  Victim();
  auto r = std::make_shared<Reply>();
  Reclaim(r);
  ASSERT_OK(h_->tenants().SetLimits("a", {kAll / 2, 0}).status());
  PastGrace();
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kResourceExhausted,
                                 HasSubstr("quota")));
  EXPECT_EQ(h_->parts().lessor.size(), 0u);
  EXPECT_EQ(h_->UsedPages(), 0u);
}

TEST_F(ReclaimTest, AGrantTheStoreRefusesIsUnavailableAndGivesTheMemoryBack) {
  config_.store = true;
  Build();
  Victim();
  auto r = std::make_shared<Reply>();
  Reclaim(r);
  ASSERT_OK(h_->FailStore("INSERT ON leases"));
  PastGrace();
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kUnavailable,
                                 HasSubstr("nothing was granted")));
  EXPECT_EQ(h_->parts().lessor.size(), 0u);
  EXPECT_EQ(h_->parts().reclaims.size(), 0u);
  EXPECT_EQ(h_->UsedPages(), 0u);
}

}  // namespace
}  // namespace physpool::server
