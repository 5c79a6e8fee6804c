// SPDX-License-Identifier: Apache-2.0
// Waiting (lease/waiting.h): requests queued (capped per tenant), retried
// oldest first when memory comes back, answered at their deadline, on
// cancel, at shutdown, or as soon as they can never be served; and each
// finished wait observed once in the wait-time histogram.
#include "server/lease/waiting.h"

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

constexpr uint64_t kPage = LeaseParts::kPage;
constexpr uint64_t kAll = LeaseParts::kSegmentBytes;  // 256 pages

class WaitingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.options.max_waiters_per_tenant = 2;
    config_.options.starvation = absl::Seconds(1);
    h_ = std::make_unique<LeaseParts>(config_);
    ASSERT_OK(h_->Start());
  }
  static AllocateParams Wait(uint64_t bytes, const std::string& rid = "") {
    AllocateParams p = LeaseParts::Params(bytes);
    p.may_wait = true;
    p.request_id = rid;
    return p;
  }
  uint64_t Waits() const { return h_->parts().wait_seconds.count; }

  LeaseParts::Config config_;
  std::unique_ptr<LeaseParts> h_;
};

TEST_F(WaitingTest, ARequestThatMayWaitIsQueued) {
  ASSERT_OK(h_->Allocate("a", kAll).status());
  const int wakes = h_->turns.maintenance_wakes;
  auto r = std::make_shared<Reply>();
  const uint64_t handle = h_->Admit("b", Wait(kPage), r);
  EXPECT_NE(handle, 0u);
  EXPECT_FALSE(r->answered());
  ASSERT_EQ(h_->parts().waiters.size(), 1u);
  EXPECT_EQ(h_->parts().waiters.begin()->handle, handle);
  EXPECT_EQ(h_->parts().waiting.waits_started(), 1u);
  // The maintenance thread learns of its deadline.
  EXPECT_GT(h_->turns.maintenance_wakes, wakes);
  // Without may_wait the same request is answered at once.
  EXPECT_THAT(h_->Allocate("b", kPage),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(Waits(), 0u);
}

TEST_F(WaitingTest, AWaiterIsServedWhenMemoryComesBack) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo full, h_->Allocate("a", kAll));
  auto r = std::make_shared<Reply>();
  ASSERT_NE(h_->Admit("b", Wait(kPage), r), 0u);
  h_->clock.Advance(absl::Milliseconds(300));
  // The release frees the memory in its turn; the waiters are retried at
  // the end of such a turn.
  EXPECT_TRUE(h_->Run([&](Turn& t) {
    h_->parts().ender.Release(t, h_->tenant("a"), full.id,
                              [](absl::StatusOr<bool>) {});
  }));
  EXPECT_FALSE(r->answered());
  h_->Retry();
  ASSERT_OK(r->value.status());
  EXPECT_EQ(r->value->tenant, "b");
  EXPECT_EQ(h_->parts().waiters.size(), 0u);
  EXPECT_EQ(Waits(), 1u);
  EXPECT_DOUBLE_EQ(h_->parts().wait_seconds.sum, 0.3);
}

TEST_F(WaitingTest, WaitersAreServedOldestFirst) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo quarter, h_->Allocate("a", kAll / 4));
  ASSERT_OK(h_->Allocate("a", kAll - kAll / 4).status());
  auto older = std::make_shared<Reply>();
  auto younger = std::make_shared<Reply>();
  ASSERT_NE(h_->Admit("b", Wait(kAll / 4), older), 0u);
  ASSERT_NE(h_->Admit("a", Wait(kAll / 4), younger), 0u);
  ASSERT_OK(h_->Release("a", quarter.id).status());
  h_->Retry();
  EXPECT_OK(older->value.status());
  EXPECT_FALSE(younger->answered());
  EXPECT_EQ(h_->parts().waiters.size(), 1u);
}

TEST_F(WaitingTest, AStarvingWaiterHoldsBackYoungerWaiters) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo quarter, h_->Allocate("a", kAll / 4));
  ASSERT_OK(h_->Allocate("a", kAll - kAll / 4).status());
  auto big = std::make_shared<Reply>();
  auto small = std::make_shared<Reply>();
  ASSERT_NE(h_->Admit("b", Wait(kAll / 2), big), 0u);
  ASSERT_NE(h_->Admit("a", Wait(kPage), small), 0u);
  h_->clock.Advance(absl::Seconds(1));
  ASSERT_OK(h_->Release("a", quarter.id).status());
  h_->Retry();
  // The small one would fit, but memory is kept for the starving one.
  EXPECT_FALSE(small->answered());
  EXPECT_FALSE(big->answered());
  EXPECT_EQ(h_->FreePages(), 64u);
}

TEST_F(WaitingTest, AWaiterPastItsDeadlineIsDeadlineExceeded) {
  ASSERT_OK(h_->Allocate("a", kAll).status());
  auto r = std::make_shared<Reply>();
  ASSERT_NE(h_->Admit("b", Wait(kPage, "w"), r, absl::Seconds(5)), 0u);
  h_->clock.Advance(absl::Seconds(5) - absl::Milliseconds(1));
  h_->Maintain();
  EXPECT_FALSE(r->answered());
  h_->clock.Advance(absl::Milliseconds(1));
  h_->Maintain();
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kDeadlineExceeded,
                                 HasSubstr("none came free")));
  EXPECT_EQ(h_->parts().waiters.size(), 0u);
  EXPECT_EQ(Waits(), 1u);
  EXPECT_DOUBLE_EQ(h_->parts().wait_seconds.sum, 5.0);
  // Final: a retry with its id is told the same.
  EXPECT_EQ(h_->Allocate("b", Wait(kPage, "w")).status(), r->value.status());
}

TEST_F(WaitingTest, ACancelledWaiterIsCancelledAndNeverServed) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo full, h_->Allocate("a", kAll));
  auto r = std::make_shared<Reply>();
  const uint64_t handle = h_->Admit("b", Wait(kPage), r);
  h_->Run([&](Turn& t) { h_->parts().waiting.Cancel(t, handle); });
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(h_->parts().waiters.size(), 0u);
  ASSERT_OK(h_->Release("a", full.id).status());
  h_->Retry();
  h_->Run([&](Turn& t) { h_->parts().waiting.Cancel(t, handle); });
  EXPECT_EQ(r->calls, 1);
  EXPECT_EQ(h_->UsedPages(), 0u);
}

TEST_F(WaitingTest, ShutdownAnswersEveryWaiterAndReclaim) {
  AllocateParams preemptible = LeaseParts::Params(kAll / 2);
  preemptible.req.preemptible = true;
  ASSERT_OK(h_->Allocate("a", preemptible).status());
  ASSERT_OK(h_->Allocate("a", kAll / 2).status());
  auto waiter = std::make_shared<Reply>();
  auto reclaim = std::make_shared<Reply>();
  ASSERT_NE(h_->Admit("b", Wait(kAll), waiter), 0u);
  AllocateParams p = LeaseParts::Params(kAll / 2);
  p.may_reclaim = true;
  ASSERT_NE(h_->Admit("b", p, reclaim), 0u);
  ASSERT_EQ(h_->parts().reclaims.size(), 1u);
  h_->Run([&](Turn& t) {
    h_->parts().waiting.Drain(t, absl::UnavailableError("shutting down"));
  });
  EXPECT_THAT(waiter->value, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(reclaim->value, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(h_->parts().waiters.size(), 0u);
  // The reclaim's memory comes back without becoming a lease.
  h_->clock.Advance(absl::Seconds(1));
  h_->Maintain();
  EXPECT_EQ(h_->Scrub(), 1);
  EXPECT_EQ(reclaim->calls, 1);
  EXPECT_EQ(h_->parts().lessor.Usage("b").leases, 0u);
  EXPECT_EQ(h_->UsedPages(), kAll / 2 / kPage);
}

TEST_F(WaitingTest, ATenantMayHaveOnlySoManyWaiters) {
  ASSERT_OK(h_->Allocate("a", kAll).status());
  auto r1 = std::make_shared<Reply>();
  auto r2 = std::make_shared<Reply>();
  auto r3 = std::make_shared<Reply>();
  EXPECT_NE(h_->Admit("b", Wait(kPage), r1), 0u);
  EXPECT_NE(h_->Admit("b", Wait(kPage), r2), 0u);
  EXPECT_EQ(h_->Admit("b", Wait(kPage, "third"), r3), 0u);
  EXPECT_THAT(r3->value, StatusIs(absl::StatusCode::kResourceExhausted,
                                  HasSubstr("max_waiters_per_tenant")));
  EXPECT_EQ(h_->parts().waiting.waits_started(), 2u);
  // Another tenant's count is its own.
  auto other = std::make_shared<Reply>();
  EXPECT_NE(h_->Admit("a", Wait(kPage), other), 0u);
  EXPECT_EQ(h_->parts().waiters.size(), 3u);
}

TEST_F(WaitingTest, AWaiterThatCanNoLongerBeServedIsToldWhyOnRetry) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo full, h_->Allocate("a", kAll));
  auto r = std::make_shared<Reply>();
  ASSERT_NE(h_->Admit("b", Wait(2 * kPage), r), 0u);
  ASSERT_OK(h_->tenants().SetLimits("b", {kPage, 0}).status());
  ASSERT_OK(h_->Release("a", full.id).status());
  h_->Retry();
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kResourceExhausted,
                                 HasSubstr("quota")));
  EXPECT_EQ(h_->parts().waiters.size(), 0u);
  EXPECT_EQ(Waits(), 1u);
}

// Issue 25: a waiter whose retry starts a reclaim is one wait, observed
// once when the reclaim ends — not also when its wait turned into a
// reclaim.
TEST_F(WaitingTest, AWaitThatBecomesAReclaimIsObservedOnceWhenItEnds) {
  // a holds half the pool (plain) and half (preemptible): nothing to
  // reclaim for the whole pool, so b's request waits.
  ASSERT_OK_AND_ASSIGN(LeaseInfo plain, h_->Allocate("a", kAll / 2));
  AllocateParams pre = LeaseParts::Params(kAll / 2);
  pre.req.preemptible = true;
  ASSERT_OK(h_->Allocate("a", pre).status());
  AllocateParams p = Wait(kAll * 3 / 4);
  p.may_reclaim = true;
  auto r = std::make_shared<Reply>();
  ASSERT_NE(h_->Admit("b", p, r), 0u);
  ASSERT_EQ(h_->parts().waiters.size(), 1u);
  ASSERT_EQ(h_->parts().reclaims.size(), 0u);
  h_->clock.Advance(absl::Seconds(2));
  // The plain half comes back: the retry reclaims the preemptible half.
  ASSERT_OK(h_->Release("a", plain.id).status());
  h_->Retry();
  EXPECT_EQ(h_->parts().waiters.size(), 0u);
  EXPECT_EQ(h_->parts().reclaims.size(), 1u);
  EXPECT_EQ(Waits(), 0u) << "the wait has not ended: it goes on as a reclaim";
  h_->clock.Advance(absl::Seconds(1));
  h_->Maintain();
  EXPECT_EQ(h_->Scrub(), 1);
  ASSERT_OK(r->value.status());
  EXPECT_EQ(r->value->path, "aggressive");
  EXPECT_EQ(Waits(), 1u);
  // From its first wait to its grant.
  EXPECT_DOUBLE_EQ(h_->parts().wait_seconds.sum, 3.0);
}

}  // namespace
}  // namespace physpool::server
