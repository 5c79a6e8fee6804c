// SPDX-License-Identifier: Apache-2.0
// Lease ends and renewals (lease/end.h): an expiry ends a lease at once
// (EXPIRING before it, "expired" at it); Release answers true, then false;
// Revoke ends any lease; Renew extends from now, capped at max_ttl; the
// memory comes back only once its zeroing is recorded; an end or renewal
// the store refuses is UNAVAILABLE and leaves the lease as it was.
#include "server/lease/end.h"

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

MATCHER_P(IsOkAndHolds, value,
          "is OK and holds " + ::testing::PrintToString(value)) {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  *result_listener << "holds " << ::testing::PrintToString(*arg);
  return *arg == value;
}

constexpr uint64_t kPage = LeaseParts::kPage;
// Above this a lease's end leaves its zeroing to the scrub thread.
constexpr uint64_t kBig = 2 * Ender::kInlineZeroBytes;

class EndTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(); }
  void Build() {
    config_.segments = {{4 * kBig, 0, 0}};
    config_.options.default_ttl = absl::Seconds(10);
    config_.options.max_ttl = absl::Seconds(60);
    config_.options.expiring_warning = absl::Seconds(2);
    config_.options.store_retry = absl::ZeroDuration();
    h_ = std::make_unique<LeaseParts>(config_);
    ASSERT_OK(h_->Start());
    h_->Watch("a");
  }
  // Tenant a's lease of `bytes`, with a mark in its memory.
  LeaseInfo Lease(uint64_t bytes) {
    absl::StatusOr<LeaseInfo> l = h_->Allocate("a", bytes);
    EXPECT_OK(l.status());
    if (!l.ok()) return {};
    EXPECT_TRUE(h_->WriteFirstByte(*l, 'x'));
    return *l;
  }
  const Lessor::Lease* Live(const std::string& id) {
    return h_->parts().lessor.Find(id);
  }

  LeaseParts::Config config_;
  std::unique_ptr<LeaseParts> h_;
};

TEST_F(EndTest, ALeaseIsWarnedThenExpiresAtItsTtl) {
  const LeaseInfo l = Lease(kBig);
  h_->clock.Advance(absl::Seconds(8) - absl::Milliseconds(1));
  h_->Maintain();
  EXPECT_TRUE(h_->events["a"].empty());
  h_->clock.Advance(absl::Milliseconds(1));
  h_->Maintain();
  ASSERT_THAT(h_->Kinds("a"), ElementsAre(Kind::kExpiring));
  EXPECT_EQ(h_->events["a"][0].lease_id, l.id);
  EXPECT_NE(Live(l.id), nullptr);
  h_->clock.Advance(absl::Seconds(2));
  h_->Maintain();
  ASSERT_THAT(h_->Kinds("a"), ElementsAre(Kind::kExpiring, Kind::kExpired));
  EXPECT_EQ(h_->events["a"][1].lease_id, l.id);
  EXPECT_EQ(Live(l.id), nullptr);
  ASSERT_NE(h_->parts().lessor.FindEnded(l.id), nullptr);
  EXPECT_EQ(h_->parts().lessor.FindEnded(l.id)->how, "expired");
  EXPECT_EQ(h_->parts().ender.counters().lease_expirations, 1u);
  EXPECT_EQ(h_->parts().lessor.Usage("a").leases, 0u);
  // The memory is being zeroed: back once that is done.
  EXPECT_EQ(h_->UsedPages(), kBig / kPage);
  EXPECT_EQ(h_->Scrub(), 1);
  EXPECT_EQ(h_->UsedPages(), 0u);
  EXPECT_EQ(h_->ReadFirstByte(l), 0);
}

TEST_F(EndTest, ReleaseAnswersTrueThenFalse) {
  const LeaseInfo l = Lease(kPage);
  EXPECT_THAT(h_->Release("a", l.id), IsOkAndHolds(true));
  EXPECT_EQ(Live(l.id), nullptr);
  EXPECT_EQ(h_->parts().lessor.FindEnded(l.id)->how, "released");
  EXPECT_THAT(h_->Release("a", l.id), IsOkAndHolds(false));
  // A small lease is zeroed within its end: free at once, no scrub job.
  EXPECT_EQ(h_->UsedPages(), 0u);
  EXPECT_EQ(h_->ReadFirstByte(l), 0);
  EXPECT_EQ(h_->Scrub(), 0);
  // No events for an end its owner asked for.
  EXPECT_TRUE(h_->events["a"].empty());
}

TEST_F(EndTest, ReleaseIsTheOwnersOnly) {
  const LeaseInfo l = Lease(kPage);
  EXPECT_THAT(h_->Release("b", l.id),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(h_->Release("a", "l-0000000000000000"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_NE(Live(l.id), nullptr);
  EXPECT_EQ(h_->UsedPages(), 1u);
}

TEST_F(EndTest, ASecondReleaseWhileTheFirstIsRecordedAnswersFalse) {
  const LeaseInfo l = Lease(kPage);
  Answer<bool> first, second;
  auto into = [](Answer<bool>* a) {
    return [a](absl::StatusOr<bool> v) {
      ++a->calls;
      a->value = v;
    };
  };
  {
    Committer::Scope hold(&h_->parts().committer);
    h_->Run([&](Turn& t) {
      h_->parts().ender.Release(t, h_->tenant("a"), l.id, into(&first));
    });
    EXPECT_EQ(Live(l.id)->state, Lessor::State::kEnding);
    h_->Run([&](Turn& t) {
      h_->parts().ender.Release(t, h_->tenant("a"), l.id, into(&second));
    });
    EXPECT_FALSE(first.answered());
    EXPECT_FALSE(second.answered());
  }
  EXPECT_THAT(first.value, IsOkAndHolds(true));
  EXPECT_THAT(second.value, IsOkAndHolds(false));
  EXPECT_EQ(first.calls + second.calls, 2);
}

TEST_F(EndTest, TheMemoryOfABigLeaseComesBackOnceItsZeroingIsRecorded) {
  config_.store = true;
  Build();
  const LeaseInfo l = Lease(kBig);
  ASSERT_OK(h_->FailStore("DELETE ON scrubs"));
  EXPECT_THAT(h_->Release("a", l.id), IsOkAndHolds(true));
  EXPECT_EQ(h_->UsedPages(), kBig / kPage);  // not zeroed yet
  // Zeroed, but the store does not take the end of the zeroing: held.
  EXPECT_EQ(h_->Scrub(), 1);
  EXPECT_EQ(h_->ReadFirstByte(l), 0);
  EXPECT_EQ(h_->UsedPages(), kBig / kPage);
  EXPECT_FALSE(h_->parts().durable.writable());
  h_->Maintain();  // written again, refused again
  EXPECT_EQ(h_->UsedPages(), kBig / kPage);
  ASSERT_OK(h_->HealStore());
  EXPECT_TRUE(h_->Run([&](Turn& t) { h_->parts().durable.ProbeIfDue(t); }));
  EXPECT_TRUE(h_->parts().durable.writable());
  EXPECT_EQ(h_->UsedPages(), 0u);
}

// Once shutting down, Release, Renew and Revoke change nothing and say so
// (UNAVAILABLE): the store is being stopped, and a change it refuses after
// it stopped would be answered inside the turn that made it.
TEST_F(EndTest, EndsAndRenewalsAreRefusedWhileShuttingDown) {
  const LeaseInfo l = Lease(kPage);
  h_->turns.accepting = false;
  EXPECT_THAT(h_->Release("a", l.id),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting")));
  EXPECT_THAT(h_->Renew("a", l.id, absl::Seconds(30)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting")));
  EXPECT_THAT(h_->Revoke(l.id),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting")));
  ASSERT_NE(Live(l.id), nullptr);
  EXPECT_EQ(Live(l.id)->state, Lessor::State::kLive);
  EXPECT_EQ(Live(l.id)->info.expires, l.expires);
  EXPECT_EQ(h_->UsedPages(), 1u);
}

TEST_F(EndTest, RevokeEndsAnyLeaseWithARevokedEvent) {
  const LeaseInfo l = Lease(kPage);
  ASSERT_OK_AND_ASSIGN(LeaseInfo revoked, h_->Revoke(l.id, "maintenance"));
  EXPECT_EQ(revoked.id, l.id);
  EXPECT_EQ(Live(l.id), nullptr);
  EXPECT_EQ(h_->parts().lessor.FindEnded(l.id)->how, "revoked");
  ASSERT_THAT(h_->Kinds("a"), ElementsAre(Kind::kRevoked));
  EXPECT_EQ(h_->events["a"][0].reason, "maintenance");
  EXPECT_EQ(h_->parts().ender.counters().revocations.at("admin"), 1u);
  EXPECT_EQ(h_->UsedPages(), 0u);
  EXPECT_THAT(h_->Revoke(l.id), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(EndTest, ALeaseBeingRecordedOrEndedCannotBeRevoked) {
  auto r = std::make_shared<Reply>();
  {
    Committer::Scope hold(&h_->parts().committer);
    AllocateParams p = LeaseParts::Params(kPage);
    p.request_id = "g";
    h_->Admit("a", p, r);
    const std::string id = h_->parts().lessor.ByRequest("a", "g")->info.id;
    EXPECT_THAT(h_->Revoke(id), StatusIs(absl::StatusCode::kNotFound));
  }
  ASSERT_OK(r->value.status());
  EXPECT_NE(Live(r->value->id), nullptr);
  {
    Committer::Scope hold(&h_->parts().committer);
    h_->Run([&](Turn& t) {
      h_->parts().ender.Release(t, h_->tenant("a"), r->value->id,
                                [](absl::StatusOr<bool>) {});
    });
    EXPECT_THAT(h_->Revoke(r->value->id),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("being released")));
  }
}

TEST_F(EndTest, RenewExtendsFromNowCappedAtMaxTtl) {
  const LeaseInfo l = Lease(kPage);
  h_->clock.Advance(absl::Seconds(5));
  ASSERT_OK_AND_ASSIGN(LeaseInfo renewed,
                       h_->Renew("a", l.id, absl::Seconds(20)));
  EXPECT_EQ(renewed.ttl, absl::Seconds(20));
  EXPECT_EQ(renewed.expires, h_->clock.Now() + absl::Seconds(20));
  ASSERT_OK_AND_ASSIGN(renewed, h_->Renew("a", l.id, absl::Hours(1)));
  EXPECT_EQ(renewed.ttl, absl::Seconds(60));
  EXPECT_EQ(renewed.expires, h_->clock.Now() + absl::Seconds(60));
  // Zero: the lease's own TTL again.
  h_->clock.Advance(absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(renewed, h_->Renew("a", l.id, absl::ZeroDuration()));
  EXPECT_EQ(renewed.ttl, absl::Seconds(60));
  EXPECT_EQ(renewed.expires, h_->clock.Now() + absl::Seconds(60));
  EXPECT_EQ(Live(l.id)->info.expires, renewed.expires);
  // The old expiry passes: nothing happens; the new one ends it.
  h_->clock.Advance(absl::Seconds(57));
  h_->Maintain();
  EXPECT_NE(Live(l.id), nullptr);
  h_->clock.Advance(absl::Seconds(1));
  h_->Maintain();
  EXPECT_NE(Live(l.id), nullptr);
  h_->clock.Advance(absl::Seconds(2));
  h_->Maintain();
  EXPECT_EQ(Live(l.id), nullptr);
  EXPECT_THAT(h_->Renew("a", l.id, absl::Seconds(5)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("expired")));
}

TEST_F(EndTest, AnEndTheStoreRefusesLeavesTheLeaseLive) {
  config_.store = true;
  Build();
  const LeaseInfo l = Lease(kBig);
  ASSERT_OK(h_->FailStore("DELETE ON leases"));
  EXPECT_THAT(h_->Release("a", l.id),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("the lease was not ended")));
  EXPECT_THAT(h_->Revoke(l.id), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_NE(Live(l.id), nullptr);
  EXPECT_EQ(Live(l.id)->state, Lessor::State::kLive);
  EXPECT_EQ(h_->UsedPages(), kBig / kPage);
  EXPECT_EQ(h_->ReadFirstByte(l), 'x');  // a big lease: not zeroed
  EXPECT_TRUE(h_->events["a"].empty());
  // Live as before: renewed, and ended once the store takes it.
  EXPECT_OK(h_->Renew("a", l.id, absl::Seconds(30)).status());
  ASSERT_OK(h_->HealStore());
  EXPECT_THAT(h_->Release("a", l.id), IsOkAndHolds(true));
  EXPECT_EQ(h_->Scrub(), 1);
  EXPECT_EQ(h_->UsedPages(), 0u);
}

TEST_F(EndTest, ARenewalTheStoreRefusesChangesNothing) {
  config_.store = true;
  Build();
  const LeaseInfo l = Lease(kPage);
  ASSERT_OK(h_->FailStore("UPDATE ON leases"));
  h_->clock.Advance(absl::Seconds(5));
  EXPECT_THAT(h_->Renew("a", l.id, absl::Seconds(30)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("the lease was not renewed")));
  EXPECT_EQ(Live(l.id)->info.expires, l.expires);
  EXPECT_EQ(Live(l.id)->info.ttl, l.ttl);
}

}  // namespace
}  // namespace physpool::server
