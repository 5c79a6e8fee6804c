// SPDX-License-Identifier: Apache-2.0
// The tenant registry: look-ups by token (hashed), certificate name and
// name; roles and their names; limits; a reload that replaces every tenant
// at once, also while other threads look tenants up.
#include "server/lease/tenants.h"

#include <atomic>
#include <string>
#include <thread>
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

Tenant Make(const std::string& name, const std::string& token,
            const std::string& cn = "", uint32_t roles = kRoleTenant) {
  Tenant t;
  t.name = name;
  t.roles = roles;
  t.token_sha256 = {Sha256Hex(token)};
  if (!cn.empty()) t.cert_common_names = {cn};
  return t;
}

std::vector<std::string> Names(const std::vector<Tenant>& ts) {
  std::vector<std::string> out;
  for (const Tenant& t : ts) out.push_back(t.name);
  return out;
}

TEST(TenantsTest, ACallerIsFoundByItsTokenNotByTheTokensHash) {
  TenantRegistry r({Make("alice", "secret-a"), Make("bob", "secret-b")});
  ASSERT_TRUE(r.ByToken("secret-a").has_value());
  EXPECT_EQ(r.ByToken("secret-a")->name, "alice");
  EXPECT_EQ(r.ByToken("secret-b")->name, "bob");
  // The config keeps hashes: presenting the hash itself is no credential.
  EXPECT_FALSE(r.ByToken(Sha256Hex("secret-a")).has_value());
  EXPECT_FALSE(r.ByToken("secret-c").has_value());
  EXPECT_FALSE(r.ByToken("").has_value());
}

TEST(TenantsTest, ATenantIsFoundByCertificateNameAndByName) {
  TenantRegistry r({Make("alice", "a", "alice.example"), Make("bob", "b")});
  ASSERT_TRUE(r.ByCommonName("alice.example").has_value());
  EXPECT_EQ(r.ByCommonName("alice.example")->name, "alice");
  EXPECT_FALSE(r.ByCommonName("alice").has_value());
  EXPECT_EQ(r.ByName("bob")->name, "bob");
  EXPECT_FALSE(r.ByName("carol").has_value());
  EXPECT_THAT(Names(r.List()), ElementsAre("alice", "bob"));
}

TEST(TenantsTest, RolesParseAndNameBothWays) {
  auto roles = ParseRoles({"tenant", "admin"});
  ASSERT_TRUE(roles.ok());
  EXPECT_EQ(*roles, kRoleTenant | kRoleAdmin);
  EXPECT_THAT(RoleNames(*roles), ElementsAre("tenant", "admin"));
  EXPECT_THAT(RoleNames(kRoleTenant | kRolePrivileged | kRoleAdmin),
              ElementsAre("tenant", "privileged", "admin"));
  EXPECT_THAT(RoleNames(0), IsEmpty());
  EXPECT_EQ(*ParseRoles({}), 0u);
  EXPECT_THAT(ParseRoles({"tenant", "root"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("root")));
}

TEST(TenantsTest, TheImplicitTenantHasEveryRoleAndNoCredentials) {
  const Tenant t = ImplicitTenant();
  EXPECT_EQ(t.name, kImplicitTenantName);
  EXPECT_TRUE(t.Has(kRoleTenant));
  EXPECT_TRUE(t.Has(kRolePrivileged));
  EXPECT_TRUE(t.Has(kRoleAdmin));
  EXPECT_THAT(t.token_sha256, IsEmpty());
  EXPECT_THAT(t.cert_common_names, IsEmpty());
  EXPECT_FALSE(Make("x", "x").Has(kRoleAdmin));
}

TEST(TenantsTest, SetLimitsChangesOneTenantAndRefusesAnUnknownOne) {
  TenantRegistry r({Make("alice", "a"), Make("bob", "b")});
  auto t = r.SetLimits("alice", {.max_bytes = 1 << 20, .max_leases = 3});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->limits.max_bytes, 1u << 20);
  EXPECT_EQ(r.ByName("alice")->limits.max_leases, 3u);
  EXPECT_EQ(r.ByToken("a")->limits.max_bytes, 1u << 20);
  EXPECT_EQ(r.ByName("bob")->limits.max_bytes, 0u);
  EXPECT_THAT(r.SetLimits("carol", {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("carol")));
  EXPECT_FALSE(r.ByName("carol").has_value());
}

TEST(TenantsTest, ReplaceDropsOldCredentialsAndAddsNewOnes) {
  TenantRegistry r({Make("alice", "old-a", "alice.cn"), Make("bob", "b")});
  Tenant alice = Make("alice", "new-a", "", kRoleTenant | kRoleAdmin);
  r.Replace({alice, Make("carol", "c")});
  EXPECT_FALSE(r.ByToken("old-a").has_value());
  EXPECT_FALSE(r.ByCommonName("alice.cn").has_value());
  EXPECT_FALSE(r.ByToken("b").has_value());
  EXPECT_FALSE(r.ByName("bob").has_value());
  ASSERT_TRUE(r.ByToken("new-a").has_value());
  EXPECT_TRUE(r.ByToken("new-a")->Has(kRoleAdmin));
  EXPECT_EQ(r.ByToken("c")->name, "carol");
  EXPECT_THAT(Names(r.List()), ElementsAre("alice", "carol"));
}

// A reload moves token "t" from "old" to "new": a look-up during it sees
// one set or the other, never a token without its tenant.
TEST(TenantsTest, ALookupDuringReplaceSeesTheOldSetOrTheNewOne) {
  TenantRegistry r({Make("old", "t")});
  std::atomic<bool> stop{false};
  std::atomic<int> mixed{0}, seen{0};
  std::thread reader([&] {
    while (!stop.load()) {
      std::optional<Tenant> t = r.ByToken("t");
      if (!t || (t->name != "old" && t->name != "new")) ++mixed;
      ++seen;
    }
  });
  while (seen.load() == 0) std::this_thread::yield();
  for (int i = 0; i < 2000; ++i)
    r.Replace({Make(i % 2 == 0 ? "new" : "old", "t")});
  stop = true;
  reader.join();
  EXPECT_EQ(mixed.load(), 0);
}

}  // namespace
}  // namespace physpool::server
