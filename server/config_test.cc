#include "server/config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace physpool::server {
namespace {

using ::testing::HasSubstr;

std::string Error(const std::string& yaml) {
  auto c = ParseConfig(yaml, "t.yaml");
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(ConfigTest, AcceptsAFullConfig) {
  auto c = ParseConfig(R"(listen: {unix: /tmp/s.sock, tcp: "127.0.0.1:0"}
metrics: {listen: ""}
source: {type: sim, sim: {dir: /tmp/sim, page_size: 8192, segments: [{bytes: 1048576, freelist: 1, numa: 1}]}}
pool: {strategy: bigfirst, reserve_bytes: 4096}
leases: {default_ttl_seconds: 5, max_ttl_seconds: 60, expiring_warning_seconds: 1, reclaim_grace_ms: 10}
wait: {starvation_ms: 20}
tenants:
  - {name: a, token_sha256: [0000000000000000000000000000000000000000000000000000000000000000], roles: [tenant, admin], max_bytes: 10, max_leases: 2}
store: {path: /tmp/x.db, boot_id_file: /tmp/boot}
log_level: debug
)",
                       "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sim.page_size, 8192u);
  EXPECT_EQ(c->manager.strategy, pglist::Strategy::kBigFirst);
  EXPECT_EQ(c->tenants.at(0).limits.max_leases, 2u);
  EXPECT_EQ(c->store_path, "/tmp/x.db");
  EXPECT_EQ(c->manager.starvation, absl::Milliseconds(20));
}

TEST(ConfigTest, EveryBadValueNamesFileLineAndKey) {
  EXPECT_THAT(Error("bogus: 1\n"), HasSubstr("t.yaml:1: bogus: unknown key"));
  EXPECT_THAT(Error("pool:\n  strategy: random\n"),
              HasSubstr("t.yaml:2: pool.strategy"));
  EXPECT_THAT(
      Error("leases:\n  default_ttl_seconds: abc\n"),
      HasSubstr("t.yaml:2: leases.default_ttl_seconds: bad value \"abc\""));
  EXPECT_THAT(Error("source:\n  sim:\n    page_size: 1000\n"),
              HasSubstr("page_size"));
  EXPECT_THAT(Error("source:\n  type: vfio\n"), HasSubstr("source.type"));
  EXPECT_THAT(
      Error("tenants:\n  - {name: a, roles: [root], token_sha256: []}\n"),
      HasSubstr("unknown role"));
  EXPECT_THAT(Error("tenants:\n  - {name: a, token_sha256: [xyz]}\n"),
              HasSubstr("64 lowercase hex"));
  EXPECT_THAT(Error("tenants:\n  - {name: a}\n"),
              HasSubstr("needs token_sha256"));
  EXPECT_THAT(Error("implicit_tenant: false\n"),
              HasSubstr("nobody could call"));
  EXPECT_THAT(Error("listen: [1, 2]\n"), HasSubstr("must be a mapping"));
  EXPECT_THAT(Error("listen: {unix: [a, b]}\n"),
              HasSubstr("listen.unix: must be a single value"));
  EXPECT_THAT(Error("key: [unclosed\n"), HasSubstr("YAML syntax"));
  // Shapes yaml-cpp itself throws on: a mapping inside a list of strings.
  EXPECT_THAT(
      Error("tenants:\n  - {name: a, roles: [{x: 1}], token_sha256: []}\n"),
      HasSubstr("t.yaml:"));
  EXPECT_THAT(Error("tenants:\n  - {name: a, token_sha256: [{x: 1}]}\n"),
              HasSubstr("t.yaml:"));
}

}  // namespace
}  // namespace physpool::server
