// SPDX-License-Identifier: Apache-2.0
// Lookups: a tenant's Get (owner and token checks, why an ended lease's
// memory is not back), an admin's Get (live or quarantined), and pages of
// leases in id order.
#include "server/lease/lookups.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/core/fake_clock.h"
#include "server/core/turn_testing.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

class LookupsTest : public ::testing::Test {
 protected:
  // Quarantined() reads only the view: the quarantine needs no pool,
  // source or segments here.
  LookupsTest()
      : tt_(&clock_),
        lessor_(absl::Seconds(10), 16),
        quarantine_({}, nullptr, nullptr, &views_, nullptr, &tt_),
        lookups_(&lessor_, &views_, &quarantine_) {}

  static Tenant Named(const std::string& name, const std::string& scope = "") {
    Tenant t;
    t.name = name;
    t.lease_scope = scope;
    return t;
  }
  void AddLease(const std::string& id, const std::string& tenant,
                Lessor::State state = Lessor::State::kLive,
                const std::string& sha = "") {
    Lessor::Lease l;
    l.info.id = id;
    l.info.tenant = tenant;
    l.info.bytes = 8192;
    l.info.access_sha256 = sha;
    l.info.expires = clock_.Now() + absl::Minutes(1);
    l.alloc = next_alloc_++;
    l.state = state;
    lessor_.Add(std::move(l));
  }
  // Ends live lease `id` with a view that stays quarantined, held by
  // `holders`.
  void EndQuarantined(const std::string& id, std::vector<Holder> holders) {
    const Lessor::Lease* l = lessor_.Find(id);
    ASSERT_NE(l, nullptr);
    LeaseViews::View v;
    v.alloc = l->alloc;
    v.info = l->info;
    views_.Add(std::move(v));
    const pglist::AllocationId alloc = l->alloc;
    lessor_.End(id, "released");
    views_.End(alloc, clock_.Now());
    views_.Find(alloc)->holders = std::move(holders);
  }
  absl::StatusOr<LeaseInfo> Get(const Tenant& tenant, const std::string& id) {
    absl::StatusOr<LeaseInfo> out;
    tt_.Locked([&](Turn& t) { out = lookups_.Get(t, tenant, id); });
    return out;
  }
  absl::StatusOr<LeaseInfo> AdminGet(const std::string& id) {
    absl::StatusOr<LeaseInfo> out;
    tt_.Locked([&](Turn& t) { out = lookups_.AdminGet(t, id); });
    return out;
  }
  std::vector<std::string> Page(const std::optional<std::string>& tenant,
                                const std::string& after, size_t max) {
    std::vector<LeaseInfo> leases;
    tt_.Locked(
        [&](Turn& t) { leases = lookups_.Leases(t, tenant, after, max); });
    std::vector<std::string> ids;
    for (const LeaseInfo& l : leases) ids.push_back(l.id);
    return ids;
  }

  FakeClock clock_;
  TurnTesting tt_;
  Lessor lessor_;
  LeaseViews views_;
  Quarantine quarantine_;
  Lookups lookups_;
  pglist::AllocationId next_alloc_ = 1;
};

Holder Pid57() {
  Holder h;
  h.pid = 57;
  h.uid = 1000;
  h.command = "e2e_tenant";
  h.has_fd = true;
  h.maps = true;
  return h;
}

TEST_F(LookupsTest, GetAnswersTheOwnerOnly) {
  AddLease("a", "alice");
  AddLease("c", "alice", Lessor::State::kCommitting);
  ASSERT_TRUE(Get(Named("alice"), "a").ok());
  EXPECT_EQ(Get(Named("alice"), "a")->id, "a");
  EXPECT_THAT(Get(Named("bob"), "a"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(Get(Named("alice"), "c"),
              StatusIs(absl::StatusCode::kNotFound, "no lease c"));
  EXPECT_THAT(Get(Named("alice"), "zz"),
              StatusIs(absl::StatusCode::kNotFound, "no lease zz"));
}

TEST_F(LookupsTest, ATokenHolderGetsOnlyTheLeasesGrantedWithIt) {
  AddLease("a", "alice", Lessor::State::kLive, "tok");
  AddLease("b", "alice");
  EXPECT_TRUE(Get(Named("alice", "tok"), "a").ok());
  EXPECT_THAT(Get(Named("alice", "tok"), "b"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(Get(Named("alice", "other"), "a"),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(LookupsTest, TheOwnerLearnsWhyAnEndedLeasesMemoryIsNotBack) {
  AddLease("a", "alice");
  AddLease("b", "alice");
  EndQuarantined("a", {Pid57()});
  EndQuarantined("b", {});
  EXPECT_THAT(
      Get(Named("alice"), "a"),
      StatusIs(absl::StatusCode::kNotFound,
               "lease a has ended (released); its 8192 bytes are quarantined "
               "until its view is unmapped (held by pid 57 (e2e_tenant) uid "
               "1000 fd+map)"));
  EXPECT_THAT(Get(Named("alice"), "b"),
              StatusIs(absl::StatusCode::kNotFound,
                       "lease b has ended (released); its 8192 bytes are "
                       "quarantined until its view is unmapped"));
}

TEST_F(LookupsTest, NoOneElseLearnsAboutTheQuarantine) {
  AddLease("a", "alice", Lessor::State::kLive, "tok");
  EndQuarantined("a", {Pid57()});
  EXPECT_THAT(Get(Named("bob"), "a"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       Not(HasSubstr("quarantined"))));
  // Not even a token holder of the tenant (it may hold the view itself,
  // but learns nothing of other processes).
  EXPECT_THAT(Get(Named("alice", "tok"), "a"),
              StatusIs(absl::StatusCode::kNotFound, "no lease a"));
}

TEST_F(LookupsTest, AdminGetSeesLiveAndQuarantinedLeasesNotCommittingOnes) {
  AddLease("a", "alice");
  AddLease("b", "bob", Lessor::State::kEnding);
  AddLease("c", "alice", Lessor::State::kCommitting);
  AddLease("q", "alice");
  const absl::Time ended_at = clock_.Now();
  EndQuarantined("q", {Pid57()});

  ASSERT_TRUE(AdminGet("a").ok());
  EXPECT_FALSE(AdminGet("a")->quarantine.has_value());
  EXPECT_TRUE(AdminGet("b").ok());
  EXPECT_THAT(AdminGet("c"), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<LeaseInfo> q = AdminGet("q");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->tenant, "alice");
  ASSERT_TRUE(q->quarantine.has_value());
  EXPECT_EQ(q->quarantine->since, ended_at);
  ASSERT_EQ(q->quarantine->holders.size(), 1u);
  EXPECT_EQ(q->quarantine->holders[0].pid, 57);
  EXPECT_THAT(AdminGet("zz"),
              StatusIs(absl::StatusCode::kNotFound,
                       "lease zz is neither live nor quarantined"));
}

TEST_F(LookupsTest, LeasesArePagedInIdOrderAfterTheCursor) {
  for (const char* id : {"e", "b", "d", "a"}) AddLease(id, "alice");
  AddLease("c", "bob");
  AddLease("bb", "alice", Lessor::State::kCommitting);
  AddLease("f", "bob", Lessor::State::kEnding);
  EXPECT_THAT(Page(std::nullopt, "", 100),
              ElementsAre("a", "b", "c", "d", "e", "f"));
  EXPECT_THAT(Page(std::nullopt, "", 2), ElementsAre("a", "b"));
  EXPECT_THAT(Page(std::nullopt, "b", 2), ElementsAre("c", "d"));
  EXPECT_THAT(Page(std::nullopt, "f", 2), IsEmpty());
  // A tenant's page holds `max` of its own leases.
  EXPECT_THAT(Page("alice", "", 3), ElementsAre("a", "b", "d"));
  EXPECT_THAT(Page("alice", "d", 3), ElementsAre("e"));
  EXPECT_THAT(Page("bob", "", 10), ElementsAre("c", "f"));
  EXPECT_THAT(Page("carol", "", 10), IsEmpty());
  // A page of none is empty.
  EXPECT_THAT(Page(std::nullopt, "", 0), IsEmpty());
}

}  // namespace
}  // namespace physpool::server
