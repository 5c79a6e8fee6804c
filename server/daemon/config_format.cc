// SPDX-License-Identifier: Apache-2.0
// Printing physpoold's configuration as YAML (FormatConfig, config.h):
// every key with its effective value, a function per section.
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "server/daemon/config.h"
#include "yaml-cpp/yaml.h"

namespace physpool::server {
namespace {

void FormatVfio(YAML::Emitter& out, const vfio::VfioConfig& v);

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

template <typename T>
void Key(YAML::Emitter& out, const char* key, const T& value) {
  out << YAML::Key << key << YAML::Value << value;
}

void Strings(YAML::Emitter& out, const char* key,
             const std::vector<std::string>& values) {
  out << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const std::string& v : values) out << YAML::DoubleQuoted << v;
  out << YAML::EndSeq;
}

// Strings are quoted so that "" and values like "on" or "0x10" stay strings.
void Text(YAML::Emitter& out, const char* key, const std::string& value) {
  out << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << value;
}

void FormatListen(YAML::Emitter& out, const ServerConfig& c) {
  out << YAML::Key << "listen" << YAML::Value << YAML::BeginMap;
  Text(out, "unix", c.unix_socket);
  Text(out, "unix_mode", absl::StrFormat("%04o", c.unix_mode));
  Text(out, "unix_group", c.unix_group);
  Text(out, "fd_socket", c.fd_socket);
  out << YAML::Key << "fd_socket_access" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "allowed_uids" << YAML::Value << YAML::Flow
      << YAML::BeginSeq;
  for (uid_t u : c.fd_access.allowed_uids) out << u;
  out << YAML::EndSeq;
  out << YAML::Key << "allowed_gids" << YAML::Value << YAML::Flow
      << YAML::BeginSeq;
  for (gid_t g : c.fd_access.allowed_gids) out << g;
  out << YAML::EndSeq;
  Key(out, "max_connections_per_uid", c.fd_access.max_connections_per_uid);
  Key(out, "request_deadline_ms",
      absl::ToInt64Milliseconds(c.fd_access.request_deadline));
  Key(out, "answer_deadline_ms",
      absl::ToInt64Milliseconds(c.fd_access.answer_deadline));
  out << YAML::EndMap;
  Text(out, "tcp", c.tcp);
  Key(out, "insecure_tcp", c.insecure_tcp);
  out << YAML::Key << "tls" << YAML::Value << YAML::BeginMap;
  Text(out, "cert", c.tls_cert);
  Text(out, "key", c.tls_key);
  Text(out, "client_ca", c.tls_client_ca);
  out << YAML::EndMap << YAML::EndMap;
}

void FormatSource(YAML::Emitter& out, const ServerConfig& c) {
  out << YAML::Key << "source" << YAML::Value << YAML::BeginMap;
  Text(out, "type", c.source);
  out << YAML::Key << "sim" << YAML::Value << YAML::BeginMap;
  Text(out, "dir", c.sim.dir);
  Key(out, "page_size", c.sim.page_size);
  Key(out, "base_iova", c.sim.base_iova);
  out << YAML::Key << "segments" << YAML::Value << YAML::BeginSeq;
  for (const vfio::SimSegmentConfig& s : c.sim.segments) {
    out << YAML::Flow << YAML::BeginMap;
    Key(out, "bytes", s.bytes);
    Key(out, "freelist", s.freelist);
    Key(out, "numa", s.numa);
    out << YAML::EndMap;
  }
  out << YAML::EndSeq << YAML::EndMap;
  // The vfio section needs devices and a pool: only a vfio config has them.
  if (c.source == "vfio") FormatVfio(out, c.vfio);
  out << YAML::EndMap;
}

void FormatVfio(YAML::Emitter& out, const vfio::VfioConfig& v) {
  {
    out << YAML::Key << "vfio" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "devices" << YAML::Value << YAML::BeginSeq;
    for (const vfio::VfioDevice& d : v.devices) {
      out << YAML::Flow << YAML::BeginMap;
      Text(out, "bdf", d.bdf);
      Key(out, "dma_limit", d.dma_limit);
      if (!d.tenant.empty()) Text(out, "tenant", d.tenant);
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
    Key(out, "page_size", v.layout.page_size);
    Text(out, "backing",
         v.backing == vfio::BackingKind::kMemfd ? "memfd" : "file");
    Text(out, "dir", v.dir);
    Text(out, "keeper", v.keeper);
    out << YAML::Key << "pool" << YAML::Value << YAML::BeginSeq;
    for (const vfio::PoolShare& p : v.layout.pool) {
      out << YAML::Flow << YAML::BeginMap;
      Key(out, "numa", p.numa);
      Key(out, "bytes", p.bytes);
      if (p.low_bytes) Key(out, "low_bytes", *p.low_bytes);
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
    Key(out, "max_segment_bytes", v.layout.max_segment_bytes);
    Key(out, "iova_base", v.layout.iova_base);
    Key(out, "group_busy_timeout_ms",
        absl::ToInt64Milliseconds(v.group_busy_timeout));
    out << YAML::EndMap;
  }
}

// pool, leases, wait, watch and isolation: the manager's options.
void FormatManager(YAML::Emitter& out, const ServerConfig& c) {
  const ManagerOptions& m = c.manager;
  out << YAML::Key << "pool" << YAML::Value << YAML::BeginMap;
  Text(out, "strategy",
       m.strategy == pglist::Strategy::kBigFirst ? "bigfirst" : "address");
  Key(out, "reserve_bytes", m.reserve_bytes);
  Text(out, "placement", std::string(pglist::PlacementName(m.placement)));
  out << YAML::EndMap;
  out << YAML::Key << "leases" << YAML::Value << YAML::BeginMap;
  Key(out, "default_ttl_seconds", absl::ToInt64Seconds(m.default_ttl));
  Key(out, "max_ttl_seconds", absl::ToInt64Seconds(m.max_ttl));
  Key(out, "expiring_warning_seconds",
      absl::ToInt64Seconds(m.expiring_warning));
  Key(out, "reclaim_grace_ms", absl::ToInt64Milliseconds(m.reclaim_grace));
  Key(out, "max_runs_per_lease", m.max_runs_per_lease);
  out << YAML::EndMap;
  out << YAML::Key << "wait" << YAML::Value << YAML::BeginMap;
  Key(out, "starvation_ms", absl::ToInt64Milliseconds(m.starvation));
  Key(out, "max_ms", absl::ToInt64Milliseconds(m.max_wait));
  Key(out, "max_waiters_per_tenant", m.max_waiters_per_tenant);
  out << YAML::EndMap;
  out << YAML::Key << "watch" << YAML::Value << YAML::BeginMap;
  Key(out, "max_streams_per_tenant", m.max_watch_streams_per_tenant);
  Key(out, "max_queued_events", m.max_watch_queue);
  out << YAML::EndMap;
  out << YAML::Key << "isolation" << YAML::Value << YAML::BeginMap;
  Text(out, "mode", c.isolation);
  Key(out, "scan_interval_ms", absl::ToInt64Milliseconds(m.quarantine_scan));
  out << YAML::EndMap;
}

void FormatTenants(YAML::Emitter& out, const std::vector<Tenant>& tenants) {
  out << YAML::Key << "tenants" << YAML::Value << YAML::BeginSeq;
  for (const Tenant& t : tenants) {
    out << YAML::BeginMap;
    Text(out, "name", t.name);
    Strings(out, "token_sha256", t.token_sha256);
    Strings(out, "cert_common_names", t.cert_common_names);
    Strings(out, "roles", RoleNames(t.roles));
    Key(out, "max_bytes", t.limits.max_bytes);
    Key(out, "max_leases", t.limits.max_leases);
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
}

}  // namespace

std::string FormatConfig(const ServerConfig& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  FormatListen(out, c);
  out << YAML::Key << "metrics" << YAML::Value << YAML::BeginMap;
  Text(out, "listen", c.metrics);
  out << YAML::EndMap;
  FormatSource(out, c);
  FormatManager(out, c);
  FormatTenants(out, c.tenants);
  Key(out, "implicit_tenant", c.implicit_tenant);
  Text(out, "log_level", LevelName(c.log_level));
  Text(out, "log_format", LogFormatName(c.log_format));
  out << YAML::Key << "store" << YAML::Value << YAML::BeginMap;
  Text(out, "path", c.store_path);
  Text(out, "boot_id_file", c.boot_id_file);
  out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace physpool::server
