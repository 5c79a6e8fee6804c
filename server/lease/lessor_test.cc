// SPDX-License-Identifier: Apache-2.0
// The Lessor: its lease states, its indexes (id, tenant usage, request id,
// allocation, access token), due expiries and warnings, and what it
// remembers of ended leases and failed request ids.
#include "server/lease/lessor.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);
constexpr absl::Duration kWarning = absl::Seconds(10);

// A lease of 4096 bytes for "alice", live, expiring 60s after kT0.
class L {
 public:
  L(const std::string& id, pglist::AllocationId alloc) {
    l_.info.id = id;
    l_.info.tenant = "alice";
    l_.info.bytes = 4096;
    l_.alloc = alloc;
    l_.state = Lessor::State::kLive;
    l_.request_fp = "fp-" + id;
    Ttl(absl::Seconds(60));
  }
  L& Tenant(const std::string& t) {
    l_.info.tenant = t;
    return *this;
  }
  L& Bytes(uint64_t b) {
    l_.info.bytes = b;
    return *this;
  }
  L& Ttl(absl::Duration ttl) {
    l_.info.ttl = ttl;
    l_.info.expires = kT0 + ttl;
    return *this;
  }
  L& RequestId(const std::string& rid) {
    l_.info.request_id = rid;
    return *this;
  }
  L& Sha(const std::string& sha) {
    l_.info.access_sha256 = sha;
    return *this;
  }
  L& Committing() {
    l_.state = Lessor::State::kCommitting;
    return *this;
  }
  operator Lessor::Lease() const { return l_; }

 private:
  Lessor::Lease l_;
};

std::vector<std::string> Listed(const Lessor& lessor,
                                const std::string& after = "") {
  std::vector<std::string> ids;
  lessor.ForEachFrom(after, [&](const Lessor::Lease& l) {
    ids.push_back(l.info.id);
    return true;
  });
  return ids;
}

TEST(LessorTest, ACommittingLeaseIsCountedButInvisibleUntilActivated) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("a", 7).Bytes(8192).Committing());
  // Counted against its tenant at once (parallel grants cannot exceed a
  // quota), but its tenant cannot see it, and it never expires.
  EXPECT_EQ(lessor.Usage("alice").bytes, 8192u);
  EXPECT_EQ(lessor.Usage("alice").leases, 1u);
  ASSERT_NE(lessor.Find("a"), nullptr);
  EXPECT_THAT(lessor.Owned("alice", "a"),
              StatusIs(absl::StatusCode::kNotFound, "no lease a"));
  EXPECT_THAT(Listed(lessor), IsEmpty());
  EXPECT_THAT(lessor.Due(kT0 + absl::Hours(1)), IsEmpty());
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Hours(1)), IsEmpty());
  EXPECT_EQ(lessor.NextDeadline(), std::nullopt);

  lessor.Activate("a");
  EXPECT_EQ(lessor.Find("a")->state, Lessor::State::kLive);
  ASSERT_TRUE(lessor.Owned("alice", "a").ok());
  EXPECT_EQ((*lessor.Owned("alice", "a"))->info.id, "a");
  EXPECT_THAT(Listed(lessor), ElementsAre("a"));
  EXPECT_EQ(lessor.NextDeadline(), kT0 + absl::Seconds(50));
  EXPECT_THAT(lessor.Due(kT0 + absl::Seconds(60)), ElementsAre("a"));
  ASSERT_NE(lessor.LeaseOf(7), nullptr);
  EXPECT_EQ(*lessor.LeaseOf(7), "a");
}

TEST(LessorTest, AnEndedLeaseIsFoundAsEndedNotLive) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("a", 3).RequestId("r1"));
  const Lessor::Lease gone = lessor.End("a", "released");
  EXPECT_EQ(gone.info.id, "a");
  EXPECT_EQ(gone.alloc, 3u);

  EXPECT_EQ(lessor.Find("a"), nullptr);
  EXPECT_EQ(lessor.LeaseOf(3), nullptr);
  EXPECT_EQ(lessor.size(), 0u);
  ASSERT_NE(lessor.FindEnded("a"), nullptr);
  EXPECT_EQ(lessor.FindEnded("a")->how, "released");
  EXPECT_EQ(lessor.FindEnded("a")->tenant, "alice");
  EXPECT_THAT(
      lessor.Owned("alice", "a"),
      StatusIs(absl::StatusCode::kNotFound, "lease a has ended (released)"));
  // Another tenant learns only that it is not theirs.
  EXPECT_THAT(lessor.Owned("bob", "a"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // A token holder is told nothing of how it ended.
  EXPECT_THAT(lessor.Owned("alice", "a", "somesha"),
              StatusIs(absl::StatusCode::kNotFound, "no lease a"));
  EXPECT_EQ(lessor.Usage("alice").bytes, 0u);
  EXPECT_EQ(lessor.Usage("alice").leases, 0u);
  EXPECT_THAT(lessor.Due(kT0 + absl::Hours(1)), IsEmpty());
  EXPECT_EQ(lessor.NextDeadline(), std::nullopt);
}

TEST(LessorTest, ADiscardedGrantIsForgottenEntirely) {
  AccessTokens access;
  Lessor lessor(kWarning, 16, &access);
  lessor.Add(L("a", 3).RequestId("r1").Sha("s").Committing());
  lessor.Discard("a");
  EXPECT_EQ(lessor.Find("a"), nullptr);
  EXPECT_EQ(lessor.FindEnded("a"), nullptr);
  EXPECT_EQ(lessor.ByRequest("alice", "r1"), nullptr);
  EXPECT_EQ(lessor.EndedByRequest("alice", "r1"), std::nullopt);
  EXPECT_EQ(lessor.LeaseOf(3), nullptr);
  EXPECT_EQ(access.TenantOf("s"), std::nullopt);
  EXPECT_EQ(lessor.Usage("alice").leases, 0u);
  EXPECT_THAT(lessor.Owned("alice", "a"),
              StatusIs(absl::StatusCode::kNotFound, "no lease a"));
}

TEST(LessorTest, OwnedRefusesAnotherTenantAndAnotherAccessToken) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("a", 1).Sha("tok1"));
  lessor.Add(L("b", 2));
  EXPECT_THAT(lessor.Owned("bob", "a"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("belongs to another tenant")));
  EXPECT_TRUE(lessor.Owned("alice", "a").ok());          // own credentials
  EXPECT_TRUE(lessor.Owned("alice", "a", "tok1").ok());  // its token
  EXPECT_THAT(lessor.Owned("alice", "a", "tok2"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("access token does not reach")));
  // A lease granted with no token is out of every token's reach.
  EXPECT_THAT(lessor.Owned("alice", "b", "tok1"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(lessor.Owned("alice", "zz"),
              StatusIs(absl::StatusCode::kNotFound, "no lease zz"));
}

TEST(LessorTest, DueListsLiveLeasesInDeadlineOrderAndSkipsEndingOnes) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("a", 1).Ttl(absl::Seconds(30)));
  lessor.Add(L("b", 2).Ttl(absl::Seconds(10)));
  lessor.Add(L("c", 3).Ttl(absl::Seconds(20)));
  EXPECT_THAT(lessor.Due(kT0 + absl::Seconds(9)), IsEmpty());
  // At or before `now`, oldest deadline first (not id order).
  EXPECT_THAT(lessor.Due(kT0 + absl::Seconds(20)), ElementsAre("b", "c"));
  EXPECT_THAT(lessor.Due(kT0 + absl::Seconds(99)), ElementsAre("b", "c", "a"));
  // An ending lease's end is in flight: not due, and not a deadline.
  lessor.SetEnding("b", true);
  EXPECT_THAT(lessor.Due(kT0 + absl::Seconds(99)), ElementsAre("c", "a"));
  lessor.TakeWarnings(kT0 + absl::Seconds(99));  // past every warning
  EXPECT_EQ(lessor.NextDeadline(), kT0 + absl::Seconds(20));
  // Its end failed: live again, and due again; its warning (dropped unsent
  // while it was ending) is due first.
  lessor.SetEnding("b", false);
  EXPECT_THAT(lessor.Due(kT0 + absl::Seconds(99)), ElementsAre("b", "c", "a"));
  EXPECT_EQ(lessor.NextDeadline(), kT0);
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Seconds(99)), ElementsAre("b"));
  EXPECT_EQ(lessor.NextDeadline(), kT0 + absl::Seconds(10));
}

TEST(LessorTest, EndingLeasesAreStillListedAndOwned) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("a", 1));
  lessor.SetEnding("a", true);
  EXPECT_EQ(lessor.Find("a")->state, Lessor::State::kEnding);
  EXPECT_THAT(Listed(lessor), ElementsAre("a"));
  EXPECT_TRUE(lessor.Owned("alice", "a").ok());
  EXPECT_EQ(lessor.Usage("alice").leases, 1u);
}

TEST(LessorTest, AWarningIsTakenOnceAndRenewalArmsItAgain) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("a", 1).Ttl(absl::Seconds(60)));
  EXPECT_EQ(lessor.FirstDeadline(lessor.Find("a")->info),
            kT0 + absl::Seconds(50));
  EXPECT_EQ(lessor.NextDeadline(), kT0 + absl::Seconds(50));
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Seconds(49)), IsEmpty());
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Seconds(50)), ElementsAre("a"));
  EXPECT_TRUE(lessor.Find("a")->warned);
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Seconds(55)), IsEmpty());
  // Warned: the next deadline is the expiry itself.
  EXPECT_EQ(lessor.NextDeadline(), kT0 + absl::Seconds(60));

  lessor.SetExpiry("a", kT0 + absl::Seconds(120), absl::Seconds(65));
  EXPECT_FALSE(lessor.Find("a")->warned);
  EXPECT_EQ(lessor.Find("a")->info.ttl, absl::Seconds(65));
  EXPECT_EQ(lessor.NextDeadline(), kT0 + absl::Seconds(110));
  EXPECT_THAT(lessor.Due(kT0 + absl::Seconds(60)), IsEmpty());
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Seconds(109)), IsEmpty());
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Seconds(110)), ElementsAre("a"));
  EXPECT_THAT(lessor.Due(kT0 + absl::Seconds(120)), ElementsAre("a"));
}

TEST(LessorTest, WarningsComeInDeadlineOrderAndSkipEndingLeases) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("a", 1).Ttl(absl::Seconds(40)));
  lessor.Add(L("b", 2).Ttl(absl::Seconds(20)));
  lessor.Add(L("c", 3).Ttl(absl::Seconds(30)));
  lessor.SetEnding("c", true);
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Seconds(30)),
              ElementsAre("b", "a"));
}

// A release whose store write fails puts the lease back to live: if its
// warning fell due meanwhile (dropped unsent while it was ending), it is
// still warned before it expires.
TEST(LessorTest, ALeaseBackFromEndingIsStillWarnedBeforeItExpires) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("a", 1).Ttl(absl::Seconds(60)));
  lessor.SetEnding("a", true);
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Seconds(50)), IsEmpty());
  lessor.SetEnding("a", false);
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Seconds(55)), ElementsAre("a"));
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Seconds(56)), IsEmpty());
  EXPECT_THAT(lessor.Due(kT0 + absl::Seconds(60)), ElementsAre("a"));
}

TEST(LessorTest, RequestIdsFindTheLeaseInEveryStateThenTheEndedOne) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("a", 1).RequestId("r1").Committing());
  ASSERT_NE(lessor.ByRequest("alice", "r1"), nullptr);
  EXPECT_EQ(lessor.ByRequest("alice", "r1")->info.id, "a");
  // Request ids are per tenant.
  EXPECT_EQ(lessor.ByRequest("bob", "r1"), nullptr);
  EXPECT_EQ(lessor.ByRequest("alice", "r2"), nullptr);
  lessor.Activate("a");
  lessor.SetEnding("a", true);
  EXPECT_EQ(lessor.ByRequest("alice", "r1")->info.id, "a");
  EXPECT_EQ(lessor.EndedByRequest("alice", "r1"), std::nullopt);

  lessor.End("a", "revoked");
  EXPECT_EQ(lessor.ByRequest("alice", "r1"), nullptr);
  auto ended = lessor.EndedByRequest("alice", "r1");
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->first, "a");
  EXPECT_EQ(ended->second.how, "revoked");
  EXPECT_EQ(lessor.EndedByRequest("bob", "r1"), std::nullopt);
}

TEST(LessorTest, EndedLeasesAreRememberedUpToTheBoundOldestForgottenFirst) {
  Lessor lessor(kWarning, 2);
  for (int i = 0; i < 3; ++i) {
    const std::string id = std::string(1, static_cast<char>('a' + i));
    lessor.Add(L(id, static_cast<uint64_t>(i + 1)).RequestId("r" + id));
    lessor.End(id, "expired");
  }
  EXPECT_EQ(lessor.FindEnded("a"), nullptr);
  EXPECT_EQ(lessor.EndedByRequest("alice", "ra"), std::nullopt);
  EXPECT_THAT(lessor.Owned("alice", "a"),
              StatusIs(absl::StatusCode::kNotFound, "no lease a"));
  EXPECT_NE(lessor.FindEnded("b"), nullptr);
  EXPECT_NE(lessor.FindEnded("c"), nullptr);
  EXPECT_TRUE(lessor.EndedByRequest("alice", "rb").has_value());
  EXPECT_TRUE(lessor.EndedByRequest("alice", "rc").has_value());
}

TEST(LessorTest, FailuresAreRememberedPerTenantBoundedAndReplaced) {
  Lessor lessor(kWarning, 2);
  lessor.RememberFailure("alice", "r1", "fp1",
                         absl::ResourceExhaustedError("quota"));
  auto f = lessor.FailureOf("alice", "r1");
  ASSERT_TRUE(f.has_value());
  EXPECT_THAT(f->first,
              StatusIs(absl::StatusCode::kResourceExhausted, "quota"));
  EXPECT_EQ(f->second, "fp1");
  EXPECT_EQ(lessor.FailureOf("bob", "r1"), std::nullopt);

  // The same id again replaces its answer and takes no more room.
  lessor.RememberFailure("alice", "r1", "fp1b",
                         absl::DeadlineExceededError("waited"));
  lessor.RememberFailure("alice", "r2", "fp2",
                         absl::InvalidArgumentError("bad"));
  ASSERT_TRUE(lessor.FailureOf("alice", "r1").has_value());
  EXPECT_EQ(lessor.FailureOf("alice", "r1")->second, "fp1b");
  EXPECT_THAT(lessor.FailureOf("alice", "r1")->first,
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  // A third evicts the oldest.
  lessor.RememberFailure("alice", "r3", "fp3",
                         absl::InvalidArgumentError("bad"));
  EXPECT_EQ(lessor.FailureOf("alice", "r1"), std::nullopt);
  EXPECT_TRUE(lessor.FailureOf("alice", "r2").has_value());
  EXPECT_TRUE(lessor.FailureOf("alice", "r3").has_value());
}

TEST(LessorTest, UsageIsKeptPerTenant) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("a", 1).Tenant("alice").Bytes(4096));
  lessor.Add(L("b", 2).Tenant("alice").Bytes(8192).Committing());
  lessor.Add(L("c", 3).Tenant("bob").Bytes(65536));
  EXPECT_EQ(lessor.Usage("alice").bytes, 12288u);
  EXPECT_EQ(lessor.Usage("alice").leases, 2u);
  EXPECT_EQ(lessor.Usage("bob").bytes, 65536u);
  EXPECT_EQ(lessor.Usage("bob").leases, 1u);
  EXPECT_EQ(lessor.Usage("carol").bytes, 0u);
  EXPECT_EQ(lessor.usage().at("bob").bytes, 65536u);

  lessor.End("a", "released");
  lessor.Discard("b");
  EXPECT_EQ(lessor.Usage("alice").bytes, 0u);
  EXPECT_EQ(lessor.Usage("alice").leases, 0u);
  EXPECT_EQ(lessor.Usage("bob").leases, 1u);
}

TEST(LessorTest, TheAccessTokenIndexFollowsTheLeasesThatCarryIt) {
  AccessTokens access;
  Lessor lessor(kWarning, 16, &access);
  lessor.Add(L("a", 1).Sha("s1").Committing());
  // Committing leases count: a second request cannot take the token.
  EXPECT_EQ(access.TenantOf("s1"), "alice");
  EXPECT_EQ(lessor.TenantOfAccess("s1"), "alice");
  lessor.Activate("a");
  lessor.Add(L("b", 2).Sha("s1"));
  lessor.Add(L("c", 3).Tenant("bob").Sha("s2"));
  EXPECT_EQ(access.TenantOf("s2"), "bob");

  lessor.End("a", "released");
  EXPECT_EQ(access.TenantOf("s1"), "alice");  // b still carries it
  lessor.End("b", "expired");
  EXPECT_EQ(access.TenantOf("s1"), std::nullopt);
  EXPECT_EQ(lessor.TenantOfAccess("s1"), std::nullopt);
  EXPECT_EQ(access.TenantOf("s2"), "bob");
}

TEST(LessorTest, WithoutAnIndexGivenItKeepsItsOwn) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("a", 1).Sha("s1"));
  EXPECT_EQ(lessor.TenantOfAccess("s1"), "alice");
  lessor.End("a", "released");
  EXPECT_EQ(lessor.TenantOfAccess("s1"), std::nullopt);
}

TEST(LessorTest, ForEachFromWalksIdOrderAfterTheCursorUntilToldToStop) {
  Lessor lessor(kWarning, 16);
  lessor.Add(L("d", 4));
  lessor.Add(L("b", 2));
  lessor.Add(L("a", 1));
  lessor.Add(L("c", 3).Committing());
  EXPECT_THAT(Listed(lessor), ElementsAre("a", "b", "d"));
  EXPECT_THAT(Listed(lessor, "a"), ElementsAre("b", "d"));
  EXPECT_THAT(Listed(lessor, "b"), ElementsAre("d"));
  EXPECT_THAT(Listed(lessor, "d"), IsEmpty());
  std::vector<std::string> two;
  lessor.ForEachFrom("", [&](const Lessor::Lease& l) {
    two.push_back(l.info.id);
    return two.size() < 2;
  });
  EXPECT_THAT(two, ElementsAre("a", "b"));
}

TEST(LessorTest, RestoreIndexesEveryLeaseAsAddWould) {
  AccessTokens access;
  Lessor lessor(kWarning, 16, &access);
  std::vector<Lessor::Lease> leases;
  // Out of id and deadline order, and not live as given: restored leases
  // are live.
  leases.push_back(L("c", 3)
                       .Tenant("bob")
                       .Bytes(8192)
                       .Ttl(absl::Seconds(5))
                       .RequestId("rc")
                       .Committing());
  leases.push_back(L("a", 1).Ttl(absl::Seconds(30)).Sha("s1"));
  leases.push_back(L("b", 2).Ttl(absl::Seconds(15)).RequestId("rb"));
  lessor.Restore(std::move(leases));

  EXPECT_EQ(lessor.size(), 3u);
  EXPECT_EQ(lessor.Find("c")->state, Lessor::State::kLive);
  EXPECT_THAT(Listed(lessor), ElementsAre("a", "b", "c"));
  EXPECT_THAT(lessor.Due(kT0 + absl::Minutes(1)), ElementsAre("c", "b", "a"));
  EXPECT_EQ(lessor.NextDeadline(), kT0 + absl::Seconds(5) - kWarning);
  EXPECT_EQ(*lessor.LeaseOf(2), "b");
  EXPECT_EQ(lessor.ByRequest("bob", "rc")->info.id, "c");
  EXPECT_EQ(access.TenantOf("s1"), "alice");
  EXPECT_EQ(lessor.Usage("alice").leases, 2u);
  EXPECT_EQ(lessor.Usage("bob").bytes, 8192u);
  EXPECT_TRUE(lessor.Owned("bob", "c").ok());

  // New leases and ends interleave with the restored ones.
  lessor.Add(L("ab", 4).Ttl(absl::Seconds(10)));
  EXPECT_THAT(Listed(lessor), ElementsAre("a", "ab", "b", "c"));
  EXPECT_THAT(lessor.Due(kT0 + absl::Minutes(1)),
              ElementsAre("c", "ab", "b", "a"));
  lessor.End("b", "expired");
  lessor.SetExpiry("c", kT0 + absl::Minutes(2), absl::Minutes(2));
  EXPECT_THAT(Listed(lessor), ElementsAre("a", "ab", "c"));
  EXPECT_THAT(lessor.Due(kT0 + absl::Minutes(1)), ElementsAre("ab", "a"));
  EXPECT_THAT(lessor.TakeWarnings(kT0 + absl::Minutes(1)),
              ElementsAre("ab", "a"));
  EXPECT_EQ(lessor.LeaseOf(2), nullptr);
  EXPECT_EQ(lessor.EndedByRequest("alice", "rb")->first, "b");
  lessor.End("a", "released");
  EXPECT_EQ(access.TenantOf("s1"), std::nullopt);
}

}  // namespace
}  // namespace physpool::server
