// SPDX-License-Identifier: Apache-2.0
#include "server/daemon/config.h"

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
pool: {strategy: bigfirst, reserve_bytes: 4096, placement: bestfit}
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
  EXPECT_EQ(c->manager.placement, pglist::Placement::kBestFit);
  EXPECT_EQ(c->tenants.at(0).limits.max_leases, 2u);
  EXPECT_EQ(c->store_path, "/tmp/x.db");
  EXPECT_EQ(c->manager.starvation, absl::Milliseconds(20));
}

TEST(ConfigTest, EveryBadValueNamesFileLineAndKey) {
  EXPECT_THAT(Error("bogus: 1\n"), HasSubstr("t.yaml:1: bogus: unknown key"));
  EXPECT_THAT(Error("pool:\n  strategy: random\n"),
              HasSubstr("t.yaml:2: pool.strategy"));
  EXPECT_THAT(Error("pool:\n  placement: worstfit\n"),
              HasSubstr("t.yaml:2: pool.placement"));
  EXPECT_THAT(
      Error("leases:\n  default_ttl_seconds: abc\n"),
      HasSubstr("t.yaml:2: leases.default_ttl_seconds: bad value \"abc\""));
  EXPECT_THAT(Error("source:\n  sim:\n    page_size: 1000\n"),
              HasSubstr("page_size"));
  EXPECT_THAT(Error("source:\n  type: vfio\n"),
              HasSubstr("t.yaml:2: source.vfio: is required with type vfio"));
  EXPECT_THAT(Error("source:\n  type: dpdk\n"),
              HasSubstr("t.yaml:2: source.type: \"dpdk\" is not available"));
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

constexpr char kVfio[] = R"(tenants:
  - {name: a, token_sha256: [0000000000000000000000000000000000000000000000000000000000000000]}
source:
  type: vfio
  vfio:
    devices:
      - {bdf: "0000:00:01.0", dma_limit: 0x10000000}
      - {bdf: "0000:00:02.0"}
    page_size: 2097152
    backing: memfd
    max_segment_bytes: 8388608
    group_busy_timeout_ms: 5000
    pool:
      - {numa: 0, bytes: 25165824, low_bytes: 12582912}
      - {numa: 1, bytes: 4194304}
)";

TEST(ConfigTest, AcceptsAVfioSource) {
  auto c = ParseConfig(kVfio, "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->source, "vfio");
  ASSERT_EQ(c->vfio.devices.size(), 2u);
  EXPECT_EQ(c->vfio.devices[0].dma_limit, uint64_t{1} << 28);
  EXPECT_EQ(c->vfio.devices[1].dma_limit, 0u);
  EXPECT_EQ(c->vfio.layout.dma_limits,
            (std::vector<uint64_t>{uint64_t{1} << 28}));
  EXPECT_EQ(c->vfio.backing, vfio::BackingKind::kMemfd);
  EXPECT_EQ(c->vfio.layout.max_segment_bytes, 8u << 20);
  EXPECT_EQ(c->vfio.group_busy_timeout, absl::Seconds(5));
  ASSERT_EQ(c->vfio.layout.pool.size(), 2u);
  EXPECT_EQ(c->vfio.layout.pool[0].low_bytes,
            std::optional<uint64_t>(12 << 20));
  EXPECT_EQ(c->vfio.layout.pool[1].low_bytes, std::nullopt);
}

TEST(ConfigTest, BadVfioValuesNameTheirLine) {
  auto with = [](const std::string& from, const std::string& to) {
    std::string y = kVfio;
    const size_t at = y.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return Error(y.replace(at, from.size(), to));
  };
  EXPECT_THAT(with("page_size: 2097152", "page_size: 65536"),
              HasSubstr("t.yaml:9: source.vfio.page_size: must be 4096"));
  EXPECT_THAT(with("backing: memfd", "backing: file\n    keeper: /run/k.sock"),
              HasSubstr("t.yaml:11: source.vfio.keeper: needs backing: memfd"));
  EXPECT_THAT(with("backing: memfd", "backing: memfd\n    keeper: k.sock"),
              HasSubstr("t.yaml:11: source.vfio.keeper: must be an absolute"));
  {
    std::string y = kVfio;
    y.replace(y.find("backing: memfd"), 14,
              "backing: memfd\n    keeper: /run/physpool/keeper.sock");
    auto k = ParseConfig(y, "t.yaml");
    ASSERT_TRUE(k.ok()) << k.status();
    EXPECT_EQ(k->vfio.keeper, "/run/physpool/keeper.sock");
  }
  EXPECT_THAT(
      with("backing: memfd", "backing: tmpfs"),
      HasSubstr("t.yaml:10: source.vfio.backing: must be file or memfd"));
  EXPECT_THAT(with("dma_limit: 0x10000000", "dma_limit: 0x10000001"),
              HasSubstr("t.yaml:7: source.vfio.devices[0].dma_limit: must be a "
                        "multiple of the page size"));
  EXPECT_THAT(with("bdf: \"0000:00:01.0\"", "bdf: \"../../etc\""),
              HasSubstr("t.yaml:7: source.vfio.devices[0].bdf"));
  EXPECT_THAT(with("bytes: 25165824, low_bytes: 12582912",
                   "bytes: 25165824, low_bytes: 33554432"),
              HasSubstr("t.yaml:14: source.vfio.pool[0].low_bytes: must not "
                        "exceed bytes"));
  EXPECT_THAT(with("{numa: 1, bytes: 4194304}", "{numa: 1, bytes: 1000}"),
              HasSubstr("t.yaml:15: source.vfio.pool[1].bytes: must be a "
                        "positive multiple"));
  EXPECT_THAT(with("{numa: 1, bytes: 4194304}", "{numa: 1}"),
              HasSubstr("t.yaml:15: source.vfio.pool[1].bytes: is required"));
  EXPECT_THAT(with("{numa: 1, bytes: 4194304}", "{numa: -1, bytes: 4194304}"),
              HasSubstr("source.vfio.pool[1].numa: must be 0 to 127"));
  EXPECT_THAT(with("      - {bdf: \"0000:00:01.0\", dma_limit: 0x10000000}\n"
                   "      - {bdf: \"0000:00:02.0\"}\n",
                   "      - {bdf: \"0000:00:02.0\"}\n"),
              HasSubstr("pool[0].low_bytes: needs a device with a dma_limit"));
  EXPECT_THAT(with("max_segment_bytes: 8388608", "max_segments: 8"),
              HasSubstr("t.yaml:11: source.vfio.max_segments: unknown key"));
  EXPECT_THAT(with("    devices:\n", "    devicez:\n"),
              HasSubstr("source.vfio.devicez: unknown key"));
}

// Device domains (docs/vfio.md, "Device domains"): a device assigned to a
// configured tenant keeps its tenant, through what --check-config prints
// too; a device without one is pool-wide.
TEST(ConfigTest, AVfioDeviceOfAConfiguredTenantKeepsItsTenant) {
  std::string y = kVfio;
  y.replace(y.find("dma_limit: 0x10000000}"), 22,
            "dma_limit: 0x10000000, tenant: a}");
  auto c = ParseConfig(y, "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->vfio.devices.size(), 2u);
  EXPECT_EQ(c->vfio.devices[0].tenant, "a");
  EXPECT_EQ(c->vfio.devices[1].tenant, "") << "pool-wide";
  auto again = ParseConfig(FormatConfig(*c), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << FormatConfig(*c);
  ASSERT_EQ(again->vfio.devices.size(), 2u);
  EXPECT_EQ(again->vfio.devices[0].bdf, "0000:00:01.0");
  EXPECT_EQ(again->vfio.devices[0].tenant, "a");
  EXPECT_EQ(again->vfio.devices[1].tenant, "");
  // The implicit tenant is a configured tenant when it is on.
  std::string d = kVfio;
  d.replace(d.find("tenants:"), 8, "implicit_tenant: true\ntenants:");
  d.replace(d.find("{bdf: \"0000:00:02.0\"}"), 21,
            "{bdf: \"0000:00:02.0\", tenant: default}");
  auto implicit = ParseConfig(d, "t.yaml");
  ASSERT_TRUE(implicit.ok()) << implicit.status();
  EXPECT_EQ(implicit->vfio.devices[1].tenant, "default");
}

// A device of a tenant that is not configured, an empty tenant and a
// device listed twice are refused, naming the line and the key.
TEST(ConfigTest, AVfioDeviceOfAnUnknownTenantOrListedTwiceIsRefused) {
  auto with = [](const std::string& from, const std::string& to) {
    std::string y = kVfio;
    const size_t at = y.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return Error(y.replace(at, from.size(), to));
  };
  EXPECT_THAT(
      with("{bdf: \"0000:00:02.0\"}", "{bdf: \"0000:00:02.0\", tenant: zed}"),
      HasSubstr("t.yaml:8: source.vfio.devices[1].tenant: \"zed\" is "
                "not a configured tenant"));
  // "default" is a tenant only while implicit_tenant is on.
  EXPECT_THAT(with("{bdf: \"0000:00:02.0\"}",
                   "{bdf: \"0000:00:02.0\", tenant: default}"),
              HasSubstr("t.yaml:8: source.vfio.devices[1].tenant: \"default\" "
                        "is not a configured tenant"));
  EXPECT_THAT(
      with("{bdf: \"0000:00:02.0\"}", "{bdf: \"0000:00:02.0\", tenant: \"\"}"),
      HasSubstr("t.yaml:8: source.vfio.devices[1].tenant: must name a tenant"));
  EXPECT_THAT(with("{bdf: \"0000:00:02.0\"}", "{bdf: \"0000:00:01.0\"}"),
              HasSubstr("t.yaml:8: source.vfio.devices[1].bdf: device "
                        "0000:00:01.0 is listed twice"));
  // Twice with different tenants is as wrong.
  EXPECT_THAT(
      with("{bdf: \"0000:00:02.0\"}", "{bdf: \"0000:00:01.0\", tenant: a}"),
      HasSubstr("source.vfio.devices[1].bdf: device 0000:00:01.0 is "
                "listed twice"));
}

// Issue 11, defect 10: configurations that silently gave the wrong tenant
// rights are refused, naming the key and its line.
TEST(ConfigTest, FootGunsAreRefused) {
  const std::string h1 = std::string(64, 'a'), h2 = std::string(64, 'b');
  // The implicit tenant would replace a tenant named "default".
  EXPECT_THAT(
      Error("implicit_tenant: true\ntenants:\n  - {name: x, "
            "token_sha256: [" +
            h1 + "]}\n  - {name: default, token_sha256: [" + h2 + "]}\n"),
      HasSubstr("t.yaml:4: tenants[1].name: \"default\" is the "
                "implicit tenant's name"));
  // One token for two tenants.
  EXPECT_THAT(Error("tenants:\n  - {name: x, token_sha256: [" + h1 +
                    "]}\n  - {name: y, token_sha256: [" + h1 + "]}\n"),
              HasSubstr("t.yaml:3: tenants[1].token_sha256: this token hash "
                        "is also given for tenant \"x\""));
  EXPECT_THAT(Error("tenants:\n  - {name: x, cert_common_names: [c]}\n  - "
                    "{name: y, cert_common_names: [c]}\n"),
              HasSubstr("\"c\" is also given for tenant \"x\""));
  // An unauthenticated admin on the network.
  EXPECT_THAT(Error("implicit_tenant: true\nlisten: {tcp: \"0.0.0.0:7600\", "
                    "insecure_tcp: true}\n"),
              HasSubstr("t.yaml:1: implicit_tenant: cannot be true with "
                        "listen.tcp 0.0.0.0:7600 off loopback"));
  EXPECT_TRUE(ParseConfig("implicit_tenant: true\nlisten: {tcp: "
                          "\"127.0.0.1:7600\"}\n",
                          "t.yaml")
                  .ok());
  // Flags that override the file are checked too.
  ServerConfig c = DefaultConfig();
  c.tcp = "10.1.2.3:7600";
  c.insecure_tcp = true;
  EXPECT_THAT(std::string(CheckListeners(c).message()),
              HasSubstr("implicit tenant"));
  c.implicit_tenant = false;
  EXPECT_TRUE(CheckListeners(c).ok());
  c.insecure_tcp = false;
  EXPECT_THAT(std::string(CheckListeners(c).message()),
              HasSubstr("without TLS"));
  // An empty file is not a configuration anyone can use.
  EXPECT_THAT(Error(""), HasSubstr("nobody could call"));
}

TEST(ConfigTest, LifecycleLimits) {
  auto c = ParseConfig(
      "implicit_tenant: true\nleases: {max_runs_per_lease: "
      "64}\nwait: {max_ms: 2000, max_waiters_per_tenant: "
      "3}\nwatch: {max_streams_per_tenant: 2, "
      "max_queued_events: 10}\n",
      "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->manager.max_runs_per_lease, 64u);
  EXPECT_EQ(c->manager.max_wait, absl::Seconds(2));
  EXPECT_EQ(c->manager.max_waiters_per_tenant, 3u);
  EXPECT_EQ(c->manager.max_watch_streams_per_tenant, 2u);
  EXPECT_EQ(c->manager.max_watch_queue, 10u);
  EXPECT_THAT(Error("implicit_tenant: true\nleases: {max_runs_per_lease: 0}\n"),
              HasSubstr("t.yaml:2: leases.max_runs_per_lease: must be 1 to"));
  EXPECT_THAT(Error("implicit_tenant: true\nwait:\n  max_ms: 0\n"),
              HasSubstr("t.yaml:3: wait.max_ms: must be > 0"));
  EXPECT_THAT(Error("implicit_tenant: true\nwatch:\n  max_queued_events: 1\n"),
              HasSubstr("t.yaml:3: watch.max_queued_events: must be >= 2"));
  EXPECT_THAT(Error("implicit_tenant: true\nwatch:\n  colour: red\n"),
              HasSubstr("t.yaml:3: watch.colour: unknown key"));
}

TEST(ConfigTest, FdSocketAccess) {
  auto d = ParseConfig("implicit_tenant: true\n", "t.yaml");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->fd_access.allowed_uids.empty());
  EXPECT_EQ(d->fd_access.max_connections_per_uid, 16u);
  EXPECT_EQ(d->fd_access.request_deadline, absl::Seconds(2));
  auto c = ParseConfig(
      "implicit_tenant: true\nlisten:\n  fd_socket_access: {allowed_uids: "
      "[1000, 1001], allowed_gids: [50], max_connections_per_uid: 4, "
      "request_deadline_ms: 500}\n",
      "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->fd_access.allowed_uids, (std::vector<uid_t>{1000, 1001}));
  EXPECT_EQ(c->fd_access.allowed_gids, (std::vector<gid_t>{50}));
  EXPECT_EQ(c->fd_access.max_connections_per_uid, 4u);
  EXPECT_EQ(c->fd_access.request_deadline, absl::Milliseconds(500));
  // What --check-config prints parses back to the same.
  auto again = ParseConfig(FormatConfig(*c), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->fd_access.allowed_uids, c->fd_access.allowed_uids);
  EXPECT_EQ(again->fd_access.allowed_gids, c->fd_access.allowed_gids);
  EXPECT_EQ(again->fd_access.request_deadline, absl::Milliseconds(500));
  EXPECT_THAT(Error("implicit_tenant: true\nlisten:\n  fd_socket_access:\n"
                    "    allowed_uids: [alice]\n"),
              HasSubstr("t.yaml:4: listen.fd_socket_access.allowed_uids: bad "
                        "id \"alice\""));
  EXPECT_THAT(Error("implicit_tenant: true\nlisten:\n  fd_socket_access:\n"
                    "    max_connections_per_uid: 0\n"),
              HasSubstr("t.yaml:4: listen.fd_socket_access.max_connections_"
                        "per_uid: must be >= 1"));
  EXPECT_THAT(Error("implicit_tenant: true\nlisten:\n  fd_socket_access:\n"
                    "    request_deadline_ms: 5\n"),
              HasSubstr("request_deadline_ms: must be from 10 to 60000"));
  EXPECT_THAT(Error("implicit_tenant: true\nlisten:\n  fd_socket_access:\n"
                    "    colour: red\n"),
              HasSubstr("t.yaml:4: listen.fd_socket_access.colour: unknown"));
}

TEST(ConfigTest, AnswerDeadlineAndSocketAccess) {
  auto c = ParseConfig(
      "implicit_tenant: true\nlisten:\n  unix_mode: \"0600\"\n  unix_group: "
      "physpool\n  fd_socket_access: {answer_deadline_ms: 750}\n",
      "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->unix_mode, 0600u);
  EXPECT_EQ(c->unix_group, "physpool");
  EXPECT_EQ(c->fd_access.answer_deadline, absl::Milliseconds(750));
  auto again = ParseConfig(FormatConfig(*c), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->unix_mode, 0600u);
  EXPECT_EQ(again->unix_group, "physpool");
  EXPECT_EQ(again->fd_access.answer_deadline, absl::Milliseconds(750));
  EXPECT_EQ(ParseConfig("implicit_tenant: true\n", "t.yaml")->unix_mode, 0660u);
  EXPECT_THAT(Error("implicit_tenant: true\nlisten:\n  unix_mode: 0400\n"),
              HasSubstr("t.yaml:3: listen.unix_mode: bad mode \"0400\""));
  EXPECT_THAT(Error("implicit_tenant: true\nlisten:\n  unix_mode: rw\n"),
              HasSubstr("listen.unix_mode: bad mode"));
  EXPECT_THAT(Error("implicit_tenant: true\nlisten:\n  fd_socket_access:\n"
                    "    answer_deadline_ms: 60001\n"),
              HasSubstr("answer_deadline_ms: must be from 10 to 60000"));
  // Warnings: an implicit tenant behind a socket every user may open.
  EXPECT_THAT(ConfigWarnings(*c),
              ::testing::ElementsAre(HasSubstr("is tenant \"default\"")));
  c->unix_mode = 0666;
  EXPECT_THAT(ConfigWarnings(*c),
              ::testing::Contains(HasSubstr("every local user")));
  c->implicit_tenant = false;
  c->unix_mode = 0660;
  EXPECT_THAT(ConfigWarnings(*c), ::testing::IsEmpty());
}

TEST(ConfigTest, ChangedKeysLeaveTheTenantsOut) {
  auto a = ParseConfig(
      "tenants: [{name: a, token_sha256: [" + std::string(64, 'a') + "]}]\n",
      "t.yaml");
  ASSERT_TRUE(a.ok()) << a.status();
  ServerConfig b = *a;
  b.tenants[0].name = "b";
  EXPECT_THAT(ChangedKeysButTenants(*a, b), ::testing::IsEmpty());
  b.tcp = "127.0.0.1:1";
  b.manager.default_ttl = absl::Seconds(7);
  EXPECT_THAT(ChangedKeysButTenants(*a, b),
              ::testing::UnorderedElementsAre("listen.tcp",
                                              "leases.default_ttl_seconds"));
}

TEST(ConfigTest, LogFormat) {
  const std::string tenants =
      "tenants: [{name: a, token_sha256: [" + std::string(64, 'a') + "]}]\n";
  auto c = ParseConfig(tenants, "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->log_format, LogFormat::kLogfmt);  // the default
  EXPECT_THAT(FormatConfig(*c), HasSubstr("log_format: \"logfmt\"\n"));
  auto j = ParseConfig(tenants + "log_format: json\n", "t.yaml");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(j->log_format, LogFormat::kJson);
  auto again = ParseConfig(FormatConfig(*j), "again.yaml");  // --check-config
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->log_format, LogFormat::kJson);
  // Not reloaded: a reload names it among the keys that need a restart.
  EXPECT_THAT(ChangedKeysButTenants(*c, *j),
              ::testing::ElementsAre("log_format"));
  EXPECT_THAT(Error(tenants + "log_format: yaml\n"),
              HasSubstr("t.yaml:2: log_format: must be logfmt or json"));
  EXPECT_THAT(Error(tenants + "log_format: [json]\n"),
              HasSubstr("t.yaml:2: log_format: must be a single value"));
}

}  // namespace
}  // namespace physpool::server
