// SPDX-License-Identifier: Apache-2.0
// Quota: a tenant's leases, its reclaims in progress and its quarantined
// memory, against the registry's current max_bytes and max_leases.
#include "server/lease/quota.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/outcome.h"
#include "pglist/testing/status_matchers.h"
#include "server/core/fake_clock.h"
#include "server/core/turn_testing.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint64_t kPage = 4096;

class QuotaTest : public ::testing::Test {
 protected:
  QuotaTest()
      : tt_(&clock_),
        lessor_(absl::Seconds(10), 16),
        tenants_({Named("alice"), Named("bob")}),
        quota_(&lessor_, &views_, &reclaims_, &tenants_) {}

  static Tenant Named(const std::string& name) {
    Tenant t;
    t.name = name;
    return t;
  }
  void Limit(const std::string& name, uint64_t bytes, uint32_t leases) {
    ASSERT_TRUE(tenants_.SetLimits(name, {bytes, leases}).ok());
  }
  void AddLease(const std::string& tenant, uint64_t bytes) {
    Lessor::Lease l;
    l.info.id = "L" + std::to_string(next_);
    l.info.tenant = tenant;
    l.info.bytes = bytes;
    l.info.expires = clock_.Now() + absl::Minutes(1);
    l.alloc = next_++;
    l.state = Lessor::State::kLive;
    lessor_.Add(std::move(l));
  }
  PendingReclaim& AddReclaim(const std::string& tenant, uint64_t bytes) {
    PendingReclaim r;
    r.handle = next_++;
    r.tenant = Named(tenant);
    r.bytes = bytes;
    r.done = [](absl::StatusOr<LeaseInfo>) {};
    return reclaims_.Add(std::move(r));
  }
  void AddQuarantined(const std::string& tenant, uint64_t bytes) {
    LeaseViews::View v;
    v.alloc = next_++;
    v.info.id = "Q" + std::to_string(v.alloc);
    v.info.tenant = tenant;
    v.info.bytes = bytes;
    const pglist::AllocationId alloc = v.alloc;
    views_.Add(std::move(v));
    views_.End(alloc, clock_.Now());
  }
  absl::Status Check(const std::string& tenant, uint64_t bytes,
                     bool adding = true) {
    absl::Status s;
    tt_.Locked(
        [&](Turn& t) { s = quota_.Check(t, Named(tenant), bytes, adding); });
    return s;
  }

  FakeClock clock_;
  TurnTesting tt_;
  Lessor lessor_;
  LeaseViews views_;
  Reclaimer reclaims_;
  TenantRegistry tenants_;
  Quota quota_;
  uint64_t next_ = 1;
};

TEST_F(QuotaTest, NoLimitsMeansAnything) {
  AddLease("alice", 1 << 30);
  EXPECT_OK(Check("alice", uint64_t{1} << 40));
}

TEST_F(QuotaTest, MaxLeasesCountsTheLeaseBeingAdded) {
  Limit("alice", 0, 2);
  AddLease("alice", kPage);
  EXPECT_OK(Check("alice", kPage));
  AddLease("alice", kPage);
  const absl::Status s = Check("alice", kPage);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted,
                          HasSubstr("holds 2 of its 2 leases")));
  EXPECT_EQ(pglist::FailReasonOf(s), pglist::FailReason::kNeverFits);
  // What it holds is within the limit: nothing to add.
  EXPECT_OK(Check("alice", kPage, /*adding=*/false));
  // Another tenant's leases are not alice's.
  EXPECT_OK(Check("bob", kPage));
}

TEST_F(QuotaTest, MaxBytesAllowsExactlyUpToTheLimit) {
  Limit("alice", 4 * kPage, 0);
  AddLease("alice", 2 * kPage);
  EXPECT_OK(Check("alice", 2 * kPage));
  const absl::Status s = Check("alice", 2 * kPage + 1);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted,
                          AllOf(HasSubstr("holds 8192 of its 16384 bytes"),
                                HasSubstr("8193 more would exceed it"))));
  EXPECT_EQ(pglist::FailReasonOf(s), pglist::FailReason::kNeverFits);
  AddLease("bob", 100 * kPage);
  EXPECT_OK(Check("alice", 2 * kPage));
}

TEST_F(QuotaTest, ReclaimsInProgressCountUntilAnswered) {
  Limit("alice", 4 * kPage, 2);
  AddLease("alice", kPage);
  PendingReclaim& r = AddReclaim("alice", 2 * kPage);
  EXPECT_THAT(Check("alice", 2 * kPage),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("holds 2 (with reclaims in progress) of "
                                 "its 2 leases")));
  Limit("alice", 4 * kPage, 0);
  EXPECT_OK(Check("alice", kPage));
  EXPECT_THAT(Check("alice", kPage + 1),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("holds 12288 (with reclaims in progress)")));
  // Cancelled: it will be no lease, so it holds nothing.
  r.done = nullptr;
  EXPECT_OK(Check("alice", 3 * kPage));
}

// A reclaim re-checks at its end what its tenant holds, itself included,
// against limits that may have changed meanwhile.
TEST_F(QuotaTest, ARecheckWithoutAddingSeesLoweredLimits) {
  Limit("alice", 4 * kPage, 0);
  AddLease("alice", kPage);
  AddReclaim("alice", 3 * kPage);
  EXPECT_OK(Check("alice", 3 * kPage, /*adding=*/false));
  Limit("alice", 3 * kPage, 0);
  EXPECT_THAT(Check("alice", 3 * kPage, /*adding=*/false),
              StatusIs(absl::StatusCode::kResourceExhausted));
  Limit("alice", 0, 1);
  EXPECT_THAT(Check("alice", 3 * kPage, /*adding=*/false),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("holds 2 (with reclaims in progress)")));
}

TEST_F(QuotaTest, QuarantinedMemoryCountsAsTheTenantsOwn) {
  Limit("alice", 4 * kPage, 0);
  AddQuarantined("alice", 3 * kPage);
  AddQuarantined("bob", 100 * kPage);
  EXPECT_OK(Check("alice", kPage));
  EXPECT_THAT(Check("alice", 2 * kPage),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("(12288 of them quarantined: ended leases "
                                 "it still maps)")));
  // Quarantined leases are ended: they are not counted as leases.
  Limit("alice", 0, 1);
  EXPECT_OK(Check("alice", kPage));
}

TEST_F(QuotaTest, TheRegistrysCurrentLimitsWinOverTheCallersCopy) {
  Tenant stale = Named("alice");
  stale.limits.max_leases = 100;
  Limit("alice", 0, 1);
  AddLease("alice", kPage);
  absl::Status s;
  tt_.Locked([&](Turn& t) { s = quota_.Check(t, stale, kPage, true); });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted));
  // A tenant the registry does not know keeps the limits it came with.
  Tenant gone = Named("carol");
  gone.limits.max_leases = 1;
  AddLease("carol", kPage);
  tt_.Locked([&](Turn& t) { s = quota_.Check(t, gone, kPage, true); });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted));
  gone.limits.max_leases = 0;
  tt_.Locked([&](Turn& t) { s = quota_.Check(t, gone, kPage, true); });
  EXPECT_OK(s);
}

}  // namespace
}  // namespace physpool::server
