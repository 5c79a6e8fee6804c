// SPDX-License-Identifier: Apache-2.0
// Admission (lease/admission.h): refusals at the door (shutdown, access
// token misuse), retries with a request id (the same lease, the same
// recording, the remembered error, a take-over of a wait or a reclaim, a
// mismatch), the starvation guard and the wait.max_ms cap.
#include "server/lease/admission.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/lease/testing/parts_fixture.h"
#include "util/sha256.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::HasSubstr;

constexpr uint64_t kPage = LeaseParts::kPage;
constexpr uint64_t kAll = LeaseParts::kSegmentBytes;  // the whole pool

class AdmissionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.options.max_wait = absl::Seconds(10);
    h_ = std::make_unique<LeaseParts>(config_);
    ASSERT_OK(h_->Start());
  }

  static AllocateParams Params(uint64_t bytes, const std::string& rid = "") {
    AllocateParams p = LeaseParts::Params(bytes);
    p.request_id = rid;
    return p;
  }
  static AllocateParams MayWait(uint64_t bytes, const std::string& rid = "") {
    AllocateParams p = Params(bytes, rid);
    p.may_wait = true;
    return p;
  }
  static AllocateParams MayReclaim(uint64_t bytes,
                                   const std::string& rid = "") {
    AllocateParams p = Params(bytes, rid);
    p.may_reclaim = true;
    return p;
  }
  // Tenant b holds the whole pool in a preemptible lease.
  void FillWithPreemptible() {
    AllocateParams p = Params(kAll);
    p.req.preemptible = true;
    ASSERT_OK(h_->Allocate("b", p).status());
  }
  // The reclaim of the memory of a preemptible lease past its grace period:
  // its victims zeroed and the window handed over (or not).
  void FinishReclaims() {
    h_->Maintain();
    EXPECT_EQ(h_->Scrub(), 1);
  }

  LeaseParts::Config config_;
  std::unique_ptr<LeaseParts> h_;
};

TEST_F(AdmissionTest, ANewRequestIsRefusedWhileShuttingDown) {
  h_->turns.accepting = false;
  auto r = std::make_shared<Reply>();
  EXPECT_EQ(h_->Admit("a", Params(kPage), r), 0u);
  EXPECT_EQ(r->calls, 1);
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kFailedPrecondition,
                                 HasSubstr("shutting down")));
  EXPECT_EQ(h_->UsedPages(), 0u);
  EXPECT_EQ(h_->parts().lessor.size(), 0u);
}

TEST_F(AdmissionTest, ARetryIsRefusedWhileShuttingDownToo) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo lease, h_->Allocate("a", Params(kPage, "r")));
  h_->turns.accepting = false;
  EXPECT_THAT(h_->Allocate("a", Params(kPage, "r")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("shutting down")));
  EXPECT_NE(h_->parts().lessor.Find(lease.id), nullptr);
}

TEST_F(AdmissionTest, AnAccessTokenNeedsPerLeaseViews) {
  LeaseParts::Config off;
  off.options.per_lease_views = false;
  LeaseParts h(off);
  ASSERT_OK(h.Start());
  AllocateParams p = Params(kPage);
  p.access_sha256 = Sha256Hex("token");
  EXPECT_THAT(h.Allocate("a", p),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("per-lease views")));
  EXPECT_EQ(h.UsedPages(), 0u);
  // Without a token the same request is served.
  EXPECT_OK(h.Allocate("a", Params(kPage)).status());
}

TEST_F(AdmissionTest, AnotherTenantsAccessTokenIsInvalidArgument) {
  AllocateParams p = Params(kPage);
  p.access_sha256 = Sha256Hex("token");
  ASSERT_OK_AND_ASSIGN(LeaseInfo first, h_->Allocate("a", p));
  EXPECT_THAT(h_->Allocate("b", p),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("another tenant's leases carry")));
  EXPECT_EQ(h_->parts().lessor.Usage("b").leases, 0u);
  // Its owner may put it on more leases.
  EXPECT_OK(h_->Allocate("a", p).status());
  EXPECT_EQ(h_->UsedPages(), 2u);
}

TEST_F(AdmissionTest, ARetryGetsTheSameLease) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo first,
                       h_->Allocate("a", Params(4 * kPage, "r")));
  ASSERT_OK_AND_ASSIGN(LeaseInfo again,
                       h_->Allocate("a", Params(4 * kPage, "r")));
  EXPECT_EQ(again.id, first.id);
  EXPECT_EQ(h_->UsedPages(), 4u);
  EXPECT_EQ(h_->parts().lessor.size(), 1u);
  // Another tenant's ids are its own.
  ASSERT_OK_AND_ASSIGN(LeaseInfo other,
                       h_->Allocate("b", Params(4 * kPage, "r")));
  EXPECT_NE(other.id, first.id);
  // Once the lease has ended, the id is spent.
  ASSERT_OK(h_->Release("a", first.id).status());
  EXPECT_THAT(h_->Allocate("a", Params(4 * kPage, "r")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("which has ended (released)")));
}

TEST_F(AdmissionTest, ARetryWhileTheGrantIsRecordedGetsItsAnswer) {
  auto first = std::make_shared<Reply>();
  auto retry = std::make_shared<Reply>();
  {
    // The first grant's store write is not applied before this ends.
    Committer::Scope hold(&h_->parts().committer);
    h_->Admit("a", Params(kPage, "r"), first);
    const Lessor::Lease* lease = h_->parts().lessor.ByRequest("a", "r");
    ASSERT_NE(lease, nullptr);
    EXPECT_EQ(lease->state, Lessor::State::kCommitting);
    h_->Admit("a", Params(kPage, "r"), retry);
    EXPECT_FALSE(first->answered());
    EXPECT_FALSE(retry->answered());
  }
  ASSERT_OK(first->value.status());
  ASSERT_OK(retry->value.status());
  EXPECT_EQ(retry->value->id, first->value->id);
  EXPECT_EQ(first->calls, 1);
  EXPECT_EQ(retry->calls, 1);
  EXPECT_EQ(h_->UsedPages(), 1u);
}

TEST_F(AdmissionTest, ARetryGetsTheRememberedFinalError) {
  ASSERT_OK(h_->tenants().SetLimits("a", {kPage, 0}).status());
  const absl::StatusOr<LeaseInfo> refused =
      h_->Allocate("a", Params(2 * kPage, "r"));
  ASSERT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted,
                                HasSubstr("quota")));
  // The limit is lifted, but the id failed for good: the same answer.
  ASSERT_OK(h_->tenants().SetLimits("a", {0, 0}).status());
  EXPECT_EQ(h_->Allocate("a", Params(2 * kPage, "r")).status(),
            refused.status());
  EXPECT_EQ(h_->UsedPages(), 0u);
  // A new id is a new request.
  EXPECT_OK(h_->Allocate("a", Params(2 * kPage, "r2")).status());
}

TEST_F(AdmissionTest, ARetryAskingForSomethingElseIsRefused) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo lease, h_->Allocate("a", Params(kPage, "r")));
  EXPECT_THAT(h_->Allocate("a", Params(2 * kPage, "r")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("other parameters")));
  EXPECT_EQ(h_->UsedPages(), 1u);
  EXPECT_NE(h_->parts().lessor.Find(lease.id), nullptr);
  // Nor with a request that failed: it is not taken for its retry.
  ASSERT_OK(h_->tenants().SetLimits("a", {kPage, 0}).status());
  ASSERT_THAT(h_->Allocate("a", Params(2 * kPage, "f")),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(h_->Allocate("a", Params(3 * kPage, "f")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("a request that failed")));
}

TEST_F(AdmissionTest, ARetryAskingForSomethingElseLeavesTheWaiterAlone) {
  ASSERT_OK(h_->Allocate("b", kAll).status());
  auto waiter = std::make_shared<Reply>();
  const uint64_t handle = h_->Admit("a", MayWait(kPage, "w"), waiter);
  ASSERT_NE(handle, 0u);
  EXPECT_THAT(h_->Allocate("a", MayWait(2 * kPage, "w")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("a waiting request")));
  EXPECT_FALSE(waiter->answered());
  ASSERT_EQ(h_->parts().waiters.size(), 1u);
  EXPECT_EQ(h_->parts().waiters.begin()->handle, handle);
}

TEST_F(AdmissionTest, ARetryTakesOverAWaitWithItsDeadlineCapped) {
  ASSERT_OK(h_->Allocate("b", kAll).status());
  auto first = std::make_shared<Reply>();
  const uint64_t handle = h_->Admit("a", MayWait(kPage, "w"), first);
  ASSERT_NE(handle, 0u);
  h_->clock.Advance(absl::Seconds(5));
  const absl::Time retried = h_->clock.Now();
  auto retry = std::make_shared<Reply>();
  // A handle of its own: the first caller's cancel no longer reaches it.
  const uint64_t taken =
      h_->Admit("a", MayWait(kPage, "w"), retry, absl::Hours(1));
  EXPECT_NE(taken, 0u);
  EXPECT_NE(taken, handle);
  EXPECT_THAT(first->value, StatusIs(absl::StatusCode::kAborted,
                                     HasSubstr("took over this wait")));
  h_->Run([&](Turn& t) { h_->parts().waiting.Cancel(t, handle); });
  EXPECT_FALSE(retry->answered());
  ASSERT_EQ(h_->parts().waiters.size(), 1u);
  EXPECT_EQ(h_->parts().waiters.begin()->deadline,
            retried + h_->options().max_wait);
  // Past the first call's deadline, short of the retry's capped one.
  h_->clock.Advance(h_->options().max_wait - absl::Milliseconds(1));
  h_->Maintain();
  EXPECT_FALSE(retry->answered());
  h_->clock.Advance(absl::Milliseconds(1));
  h_->Maintain();
  EXPECT_THAT(retry->value, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(first->calls, 1);
}

TEST_F(AdmissionTest, ANewWaitIsCappedByMaxWait) {
  ASSERT_OK(h_->Allocate("b", kAll).status());
  auto r = std::make_shared<Reply>();
  ASSERT_NE(h_->Admit("a", MayWait(kPage), r, absl::Hours(1)), 0u);
  h_->clock.Advance(h_->options().max_wait - absl::Milliseconds(1));
  h_->Maintain();
  EXPECT_FALSE(r->answered());
  h_->clock.Advance(absl::Milliseconds(1));
  h_->Maintain();
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(h_->parts().waiters.size(), 0u);
}

TEST_F(AdmissionTest, ANewReclaimIsCappedByMaxWait) {
  FillWithPreemptible();
  auto r = std::make_shared<Reply>();
  ASSERT_NE(h_->Admit("a", MayReclaim(kAll), r, absl::Hours(1)), 0u);
  h_->clock.Advance(h_->options().max_wait + absl::Milliseconds(1));
  FinishReclaims();
  EXPECT_THAT(r->value, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(h_->parts().lessor.Usage("a").leases, 0u);
}

// Issue 25: a retry that takes over a reclaim gets wait.max_ms as its cap,
// like a new request and a waiter's take-over. Before, it kept the deadline
// it asked for (an hour here) and was granted long past the cap.
TEST_F(AdmissionTest, ARetryThatTakesOverAReclaimIsCappedByMaxWait) {
  FillWithPreemptible();
  auto first = std::make_shared<Reply>();
  const uint64_t handle = h_->Admit("a", MayReclaim(kAll, "r"), first);
  ASSERT_NE(handle, 0u);
  ASSERT_EQ(h_->parts().reclaims.size(), 1u);
  h_->clock.Advance(absl::Seconds(5));
  const absl::Time retried = h_->clock.Now();
  auto retry = std::make_shared<Reply>();
  EXPECT_NE(h_->Admit("a", MayReclaim(kAll, "r"), retry, absl::Hours(1)),
            handle);
  EXPECT_THAT(first->value, StatusIs(absl::StatusCode::kAborted,
                                     HasSubstr("took over this request")));
  EXPECT_EQ(h_->parts().reclaims.ByHandle(handle)->deadline,
            retried + h_->options().max_wait);
  // The victim's memory is ready only after the cap.
  h_->clock.Advance(h_->options().max_wait + absl::Milliseconds(1));
  FinishReclaims();
  EXPECT_THAT(retry->value,
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("deadline passed during the reclaim")));
  EXPECT_EQ(first->calls, 1);
  EXPECT_EQ(h_->parts().lessor.Usage("a").leases, 0u);
  EXPECT_EQ(h_->parts().reclaims.size(), 0u);
  EXPECT_EQ(h_->UsedPages(), 0u);  // the window came back
}

// The same take-over, finished just inside the cap: served (the retry's
// deadline replaced the first call's, which had passed).
TEST_F(AdmissionTest, ARetryThatTakesOverAReclaimIsServedInsideTheCap) {
  FillWithPreemptible();
  auto first = std::make_shared<Reply>();
  const uint64_t handle = h_->Admit("a", MayReclaim(kAll, "r"), first);
  ASSERT_NE(handle, 0u);
  h_->clock.Advance(absl::Seconds(5));
  auto retry = std::make_shared<Reply>();
  const uint64_t taken =
      h_->Admit("a", MayReclaim(kAll, "r"), retry, absl::Hours(1));
  EXPECT_NE(taken, handle);
  // The first caller's cancel (its call is gone) does not reach the retry.
  h_->Run([&](Turn& t) { h_->parts().waiting.Cancel(t, handle); });
  EXPECT_FALSE(retry->answered());
  h_->clock.Advance(h_->options().max_wait - absl::Milliseconds(1));
  FinishReclaims();
  ASSERT_OK(retry->value.status());
  EXPECT_EQ(retry->value->path, "aggressive");
  EXPECT_EQ(h_->parts().lessor.ByRequest("a", "r")->info.id, retry->value->id);
}

TEST_F(AdmissionTest, AStarvingWaiterHoldsBackNewRequestsForTheSameMemory) {
  LeaseParts::Config two;
  two.segments = {{kAll, 0, 0}, {kAll, 0, 1}};  // NUMA nodes 0 and 1
  two.options.starvation = absl::Seconds(1);
  LeaseParts h(two);
  ASSERT_OK(h.Start());
  auto on = [](int32_t numa, uint64_t bytes, bool wait = false) {
    AllocateParams p = LeaseParts::Params(bytes);
    p.req.numa = numa;
    p.numa_strict = true;
    p.may_wait = wait;
    return p;
  };
  ASSERT_OK(h.Allocate("a", on(0, 192 * kPage)).status());
  auto big = std::make_shared<Reply>();
  ASSERT_NE(h.Admit("b", on(0, 128 * kPage, true), big), 0u);
  // Not starving yet: a small request goes past it.
  EXPECT_OK(h.Allocate("a", on(0, 32 * kPage)).status());
  h.clock.Advance(absl::Seconds(1));
  EXPECT_THAT(h.Allocate("a", on(0, 16 * kPage)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("an older waiting request")));
  // One that may wait queues behind it.
  auto behind = std::make_shared<Reply>();
  EXPECT_NE(h.Admit("a", on(0, 16 * kPage, true), behind), 0u);
  EXPECT_FALSE(behind->answered());
  EXPECT_EQ(h.parts().waiters.size(), 2u);
  // Requests for other memory go on.
  EXPECT_OK(h.Allocate("a", on(1, 16 * kPage)).status());
  EXPECT_FALSE(big->answered());
  EXPECT_EQ(h.UsedPages(), (192 + 32 + 16) * 1u);
}

}  // namespace
}  // namespace physpool::server
