// SPDX-License-Identifier: Apache-2.0
// Grants (lease/grant.h): a lease is committing (counted, invisible, not
// reclaimable) until its store write is recorded, then live and answered;
// a write the store refuses answers UNAVAILABLE and gives the memory back
// (nothing was granted); an Attach gets the same answer either way.
#include "server/lease/grant.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/lease/testing/parts_fixture.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr uint64_t kPage = LeaseParts::kPage;
constexpr uint64_t kAll = LeaseParts::kSegmentBytes;

class GrantTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.options.default_ttl = absl::Seconds(30);
    config_.options.max_ttl = absl::Minutes(10);
    config_.store = true;  // a real SQLite store: its writes can fail
    config_.options.store_retry = absl::ZeroDuration();
    h_ = std::make_unique<LeaseParts>(config_);
    ASSERT_OK(h_->Start());
  }
  static AllocateParams Params(uint64_t bytes, const std::string& rid) {
    AllocateParams p = LeaseParts::Params(bytes);
    p.request_id = rid;
    return p;
  }

  LeaseParts::Config config_;
  std::unique_ptr<LeaseParts> h_;
};

TEST_F(GrantTest, ALeaseIsCommittingUntilRecordedThenLive) {
  auto r = std::make_shared<Reply>();
  int wakes = 0;
  {
    Committer::Scope hold(&h_->parts().committer);  // the write waits
    h_->Admit("a", Params(4 * kPage, "g"), r);
    const Lessor::Lease* lease = h_->parts().lessor.ByRequest("a", "g");
    ASSERT_NE(lease, nullptr);
    EXPECT_EQ(lease->state, Lessor::State::kCommitting);
    EXPECT_FALSE(r->answered());
    // Counted against its tenant, but not yet its tenant's to see.
    EXPECT_EQ(h_->parts().lessor.Usage("a").bytes, 4 * kPage);
    EXPECT_THAT(h_->parts().lessor.Owned("a", lease->info.id),
                StatusIs(absl::StatusCode::kNotFound));
    EXPECT_EQ(h_->parts().lessor.NextDeadline(), std::nullopt);
    wakes = h_->turns.maintenance_wakes;
  }
  ASSERT_OK(r->value.status());
  EXPECT_EQ(r->calls, 1);
  const Lessor::Lease* lease = h_->parts().lessor.Find(r->value->id);
  ASSERT_NE(lease, nullptr);
  EXPECT_EQ(lease->state, Lessor::State::kLive);
  EXPECT_OK(h_->parts().lessor.Owned("a", r->value->id).status());
  // Into the expiry queue, and the maintenance thread told of its deadline.
  EXPECT_EQ(h_->parts().lessor.NextDeadline(),
            r->value->expires - h_->options().expiring_warning);
  EXPECT_EQ(h_->turns.maintenance_wakes, wakes + 1);
}

TEST_F(GrantTest, ALeaseShowsWhatItWasGranted) {
  AllocateParams p = Params(3 * kPage + 1, "g");
  p.label = "job";
  const absl::Time now = h_->clock.Now();
  ASSERT_OK_AND_ASSIGN(LeaseInfo l, h_->Allocate("a", p));
  EXPECT_THAT(l.id, MatchesRegex("l-[0-9a-f]{16}"));
  EXPECT_EQ(l.tenant, "a");
  EXPECT_EQ(l.bytes, 4 * kPage);
  EXPECT_EQ(l.label, "job");
  EXPECT_EQ(l.request_id, "g");
  EXPECT_EQ(l.ttl, absl::Seconds(30));  // the default
  EXPECT_EQ(l.expires, now + absl::Seconds(30));
  uint64_t bytes = 0;
  for (const LeaseRun& run : l.runs) {
    EXPECT_FALSE(run.backing_path.empty());
    bytes += run.bytes;
  }
  EXPECT_EQ(bytes, l.bytes);
  // A TTL above the maximum is capped.
  p = Params(kPage, "long");
  p.ttl = absl::Hours(2);
  ASSERT_OK_AND_ASSIGN(LeaseInfo capped, h_->Allocate("a", p));
  EXPECT_EQ(capped.ttl, absl::Minutes(10));
}

TEST_F(GrantTest, AGrantTheStoreRefusesIsUnavailableAndFreesTheMemory) {
  ASSERT_OK(h_->FailStore("INSERT ON leases"));
  auto r = std::make_shared<Reply>();
  const int freed = h_->turns.freed();
  {
    Committer::Scope hold(&h_->parts().committer);
    h_->Admit("a", Params(8 * kPage, "g"), r);
    EXPECT_EQ(h_->UsedPages(), 8u);  // held while being recorded
  }
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kUnavailable,
                                 HasSubstr("nothing was granted")));
  EXPECT_EQ(r->calls, 1);
  // Nothing changed: no lease, the memory back (and the waiters told).
  EXPECT_EQ(h_->parts().lessor.size(), 0u);
  EXPECT_EQ(h_->parts().lessor.Usage("a").leases, 0u);
  EXPECT_EQ(h_->UsedPages(), 0u);
  EXPECT_EQ(h_->turns.freed(), freed + 1);
  EXPECT_FALSE(h_->parts().durable.writable());
  // Not a final answer: the same id is a new attempt once the store heals.
  EXPECT_EQ(h_->parts().lessor.FailureOf("a", "g"), std::nullopt);
  ASSERT_OK(h_->HealStore());
  ASSERT_OK_AND_ASSIGN(LeaseInfo l, h_->Allocate("a", Params(8 * kPage, "g")));
  EXPECT_EQ(h_->parts().lessor.Find(l.id)->state, Lessor::State::kLive);
}

TEST_F(GrantTest, AnAttachedAnswerIsTheGrantsLease) {
  auto r = std::make_shared<Reply>();
  auto attached = std::make_shared<Reply>();
  {
    Committer::Scope hold(&h_->parts().committer);
    h_->Admit("a", Params(kPage, "g"), r);
    const std::string id = h_->parts().lessor.ByRequest("a", "g")->info.id;
    h_->Run(
        [&](Turn& t) { h_->parts().granter.Attach(t, id, Catch(attached)); });
    EXPECT_FALSE(attached->answered());
  }
  ASSERT_OK(r->value.status());
  ASSERT_OK(attached->value.status());
  EXPECT_EQ(attached->value->id, r->value->id);
  EXPECT_EQ(attached->value->expires, r->value->expires);
  EXPECT_EQ(attached->calls, 1);
}

TEST_F(GrantTest, AnAttachedAnswerIsTheGrantsFailure) {
  ASSERT_OK(h_->FailStore("INSERT ON leases"));
  auto r = std::make_shared<Reply>();
  auto attached = std::make_shared<Reply>();
  {
    Committer::Scope hold(&h_->parts().committer);
    h_->Admit("a", Params(kPage, "g"), r);
    const std::string id = h_->parts().lessor.ByRequest("a", "g")->info.id;
    h_->Run(
        [&](Turn& t) { h_->parts().granter.Attach(t, id, Catch(attached)); });
  }
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(attached->value.status(), r->value.status());
  EXPECT_EQ(attached->calls, 1);
  EXPECT_EQ(h_->UsedPages(), 0u);
}

TEST_F(GrantTest, APreemptibleLeaseIsNotReclaimableBeforeItIsRecorded) {
  AllocateParams p = Params(kAll, "g");
  p.req.preemptible = true;
  pglist::Request all;
  all.bytes = kAll;
  auto r = std::make_shared<Reply>();
  {
    Committer::Scope hold(&h_->parts().committer);
    h_->Admit("b", p, r);
    EXPECT_THAT(h_->parts().pool.PlanReclaim(all),
                StatusIs(absl::StatusCode::kResourceExhausted));
  }
  ASSERT_OK(r->value.status());
  ASSERT_OK_AND_ASSIGN(pglist::ReclaimPlan plan,
                       h_->parts().pool.PlanReclaim(all));
  EXPECT_EQ(plan.victims, std::vector<pglist::AllocationId>{
                              h_->parts().lessor.Find(r->value->id)->alloc});
}

}  // namespace
}  // namespace physpool::server
