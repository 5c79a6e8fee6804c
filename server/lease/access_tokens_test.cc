// SPDX-License-Identifier: Apache-2.0
// AccessTokens: the token hash -> tenant index counts the leases that
// carry each hash, and answers from any thread while it changes (its own
// lock, never the pool's).
#include "server/lease/access_tokens.h"

#include <atomic>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace physpool::server {
namespace {

TEST(AccessTokensTest, AHashIsKnownWhileAnyLeaseCarriesIt) {
  AccessTokens a;
  EXPECT_EQ(a.TenantOf("s"), std::nullopt);
  a.Add("s", "alice");
  a.Add("s", "alice");
  a.Add("t", "bob");
  EXPECT_EQ(a.TenantOf("s"), "alice");
  EXPECT_EQ(a.TenantOf("t"), "bob");
  a.Remove("s");
  EXPECT_EQ(a.TenantOf("s"), "alice");  // one lease still carries it
  a.Remove("s");
  EXPECT_EQ(a.TenantOf("s"), std::nullopt);
  EXPECT_EQ(a.TenantOf("t"), "bob");
}

TEST(AccessTokensTest, RemovingAnUnknownHashChangesNothing) {
  AccessTokens a;
  a.Remove("nope");
  a.Add("s", "alice");
  a.Remove("nope");
  EXPECT_EQ(a.TenantOf("s"), "alice");
  EXPECT_EQ(a.TenantOf("nope"), std::nullopt);
  // And the count does not go negative: one Add needs one Remove.
  a.Remove("s");
  a.Remove("s");
  a.Add("s", "alice");
  EXPECT_EQ(a.TenantOf("s"), "alice");
}

// A hash carried all along stays known to a reader on another thread
// while other hashes come and go; one that comes and goes is never seen
// with another tenant.
TEST(AccessTokensTest, LookupsFromAnotherThreadWhileItChanges) {
  AccessTokens a;
  a.Add("steady", "alice");
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0}, reads{0};
  std::thread reader([&] {
    while (!stop.load()) {
      if (a.TenantOf("steady") != "alice") ++wrong;
      std::optional<std::string> t = a.TenantOf("churn-7");
      if (t && *t != "bob") ++wrong;
      ++reads;
    }
  });
  while (reads.load() == 0) std::this_thread::yield();
  for (int round = 0; round < 200; ++round) {
    for (int i = 0; i < 20; ++i) a.Add(absl::StrCat("churn-", i), "bob");
    for (int i = 0; i < 20; ++i) a.Remove(absl::StrCat("churn-", i));
  }
  stop = true;
  reader.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(a.TenantOf("steady"), "alice");
  EXPECT_EQ(a.TenantOf("churn-7"), std::nullopt);
}

}  // namespace
}  // namespace physpool::server
