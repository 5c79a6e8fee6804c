// SPDX-License-Identifier: Apache-2.0
// Parsing physpoold's configuration (config.h): a function per top-level
// key, then the checks that span keys. Every error names the file, the
// line and the key path.
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/daemon/config_reader.h"
#include "util/status_macros.h"

namespace physpool::server {
namespace config_internal {

absl::Status ParseSeconds(const ConfigReader& r, const YAML::Node& parent,
                          const std::string& key, absl::string_view where,
                          absl::Duration unit, absl::Duration* out) {
  int64_t v = -1;
  RETURN_IF_ERROR(r.Get(parent, key, where, &v));
  if (!parent[key]) return absl::OkStatus();
  if (v < 0)
    return r.Error(parent[key], absl::StrCat(where, ".", key), "must be >= 0");
  *out = v * unit;
  return absl::OkStatus();
}

}  // namespace config_internal

namespace {

using config_internal::ConfigReader;
using config_internal::ParseIds;
using config_internal::ParseSeconds;

absl::Status ParseFdAccess(const ConfigReader& r, const YAML::Node& a,
                           FdSocketOptions* out) {
  const std::string w = "listen.fd_socket_access";
  RETURN_IF_ERROR(
      r.Keys(a, w,
             {"allowed_uids", "allowed_gids", "max_connections_per_uid",
              "request_deadline_ms", "answer_deadline_ms"}));
  RETURN_IF_ERROR(ParseIds(r, a, "allowed_uids", w, &out->allowed_uids));
  RETURN_IF_ERROR(ParseIds(r, a, "allowed_gids", w, &out->allowed_gids));
  RETURN_IF_ERROR(
      r.Get(a, "max_connections_per_uid", w, &out->max_connections_per_uid));
  if (a["max_connections_per_uid"] && out->max_connections_per_uid == 0) {
    return r.Error(a["max_connections_per_uid"], w + ".max_connections_per_uid",
                   "must be >= 1");
  }
  // Deadlines in milliseconds, from 10 ms to a minute.
  for (auto [key, deadline] :
       {std::pair{"request_deadline_ms", &out->request_deadline},
        std::pair{"answer_deadline_ms", &out->answer_deadline}}) {
    RETURN_IF_ERROR(
        ParseSeconds(r, a, key, w, absl::Milliseconds(1), deadline));
    if (a[key] &&
        (*deadline < absl::Milliseconds(10) || *deadline > absl::Seconds(60))) {
      return r.Error(a[key], absl::StrCat(w, ".", key),
                     "must be from 10 to 60000");
    }
  }
  return absl::OkStatus();
}

// isolation: mode and the quarantine scan interval.
absl::Status ParseIsolation(const ConfigReader& r, const YAML::Node& iso,
                            ServerConfig* c) {
  RETURN_IF_ERROR(r.Keys(iso, "isolation", {"mode", "scan_interval_ms"}));
  RETURN_IF_ERROR(r.Get(iso, "mode", "isolation", &c->isolation));
  if (c->isolation != "required" && c->isolation != "preferred" &&
      c->isolation != "off") {
    return r.Error(iso["mode"], "isolation.mode",
                   "must be required, preferred or off");
  }
  RETURN_IF_ERROR(ParseSeconds(r, iso, "scan_interval_ms", "isolation",
                               absl::Milliseconds(1),
                               &c->manager.quarantine_scan));
  if (iso["scan_interval_ms"] &&
      (c->manager.quarantine_scan < absl::Milliseconds(10) ||
       c->manager.quarantine_scan > absl::Minutes(10))) {
    return r.Error(iso["scan_interval_ms"], "isolation.scan_interval_ms",
                   "must be 10 to 600000");
  }
  return absl::OkStatus();
}

// store: the lease store path and the boot id file.
absl::Status ParseStore(const ConfigReader& r, const YAML::Node& st,
                        ServerConfig* c) {
  RETURN_IF_ERROR(r.Keys(st, "store", {"path", "boot_id_file"}));
  RETURN_IF_ERROR(r.Get(st, "path", "store", &c->store_path));
  RETURN_IF_ERROR(r.Get(st, "boot_id_file", "store", &c->boot_id_file));
  return absl::OkStatus();
}

// listen: sockets, their mode and group, TCP and TLS.
absl::Status ParseListen(const ConfigReader& r, const YAML::Node& l,
                         ServerConfig* c) {
  RETURN_IF_ERROR(
      r.Keys(l, "listen",
             {"unix", "unix_mode", "unix_group", "tcp", "insecure_tcp", "tls",
              "fd_socket", "fd_socket_access"}));
  if (const YAML::Node m = l["unix_mode"]) {
    // Octal, as chmod takes it: "0660", 0660 or 660.
    uint32_t mode = 0;
    const std::string text = m.IsScalar() ? m.Scalar() : "";
    bool ok = !text.empty() && text.size() <= 4;
    for (char ch : text) {
      ok = ok && ch >= '0' && ch <= '7';
      mode = mode * 8 + static_cast<uint32_t>(ch - '0');
    }
    if (!ok || (mode & 0600) != 0600) {
      return r.Error(m, "listen.unix_mode",
                     absl::StrCat("bad mode \"", text,
                                  "\": octal, at most 0777, with the "
                                  "owner's rw (e.g. \"0660\")"));
    }
    c->unix_mode = mode;
  }
  RETURN_IF_ERROR(r.Get(l, "unix_group", "listen", &c->unix_group));
  if (const YAML::Node a = l["fd_socket_access"]) {
    RETURN_IF_ERROR(ParseFdAccess(r, a, &c->fd_access));
  }
  RETURN_IF_ERROR(r.Get(l, "unix", "listen", &c->unix_socket));
  RETURN_IF_ERROR(r.Get(l, "fd_socket", "listen", &c->fd_socket));
  RETURN_IF_ERROR(r.Get(l, "tcp", "listen", &c->tcp));
  RETURN_IF_ERROR(r.Get(l, "insecure_tcp", "listen", &c->insecure_tcp));
  if (const YAML::Node t = l["tls"]) {
    RETURN_IF_ERROR(r.Keys(t, "listen.tls", {"cert", "key", "client_ca"}));
    RETURN_IF_ERROR(r.Get(t, "cert", "listen.tls", &c->tls_cert));
    RETURN_IF_ERROR(r.Get(t, "key", "listen.tls", &c->tls_key));
    RETURN_IF_ERROR(r.Get(t, "client_ca", "listen.tls", &c->tls_client_ca));
    if (c->tls_cert.empty() != c->tls_key.empty()) {
      return r.Error(t, "listen.tls", "cert and key go together");
    }
  }
  return absl::OkStatus();
}

// metrics: the Prometheus endpoint.
absl::Status ParseMetrics(const ConfigReader& r, const YAML::Node& m,
                          ServerConfig* c) {
  RETURN_IF_ERROR(r.Keys(m, "metrics", {"listen"}));
  RETURN_IF_ERROR(r.Get(m, "listen", "metrics", &c->metrics));
  return absl::OkStatus();
}

// pool: strategy, reserve and placement.
absl::Status ParsePool(const ConfigReader& r, const YAML::Node& p,
                       ServerConfig* c) {
  RETURN_IF_ERROR(
      r.Keys(p, "pool", {"strategy", "reserve_bytes", "placement"}));
  std::string strategy = "address";
  RETURN_IF_ERROR(r.Get(p, "strategy", "pool", &strategy));
  if (strategy == "address") {
    c->manager.strategy = pglist::Strategy::kAddress;
  } else if (strategy == "bigfirst") {
    c->manager.strategy = pglist::Strategy::kBigFirst;
  } else {
    return r.Error(p["strategy"], "pool.strategy",
                   "must be address or bigfirst");
  }
  RETURN_IF_ERROR(r.Get(p, "reserve_bytes", "pool", &c->manager.reserve_bytes));
  std::string placement = "nextfit";
  RETURN_IF_ERROR(r.Get(p, "placement", "pool", &placement));
  if (auto pl = pglist::ParsePlacement(placement)) {
    c->manager.placement = *pl;
  } else {
    return r.Error(p["placement"], "pool.placement",
                   "must be nextfit or bestfit");
  }
  return absl::OkStatus();
}

// leases: TTLs, warnings, grace and the run cap.
absl::Status ParseLeases(const ConfigReader& r, const YAML::Node& l,
                         ServerConfig* c) {
  RETURN_IF_ERROR(r.Keys(
      l, "leases",
      {"default_ttl_seconds", "max_ttl_seconds", "expiring_warning_seconds",
       "reclaim_grace_ms", "max_runs_per_lease"}));
  RETURN_IF_ERROR(
      r.Get(l, "max_runs_per_lease", "leases", &c->manager.max_runs_per_lease));
  if (l["max_runs_per_lease"] && (c->manager.max_runs_per_lease == 0 ||
                                  c->manager.max_runs_per_lease > 65536)) {
    return r.Error(l["max_runs_per_lease"], "leases.max_runs_per_lease",
                   "must be 1 to 65536 (a lease's answer must stay below "
                   "gRPC's 4 MiB)");
  }
  RETURN_IF_ERROR(ParseSeconds(r, l, "default_ttl_seconds", "leases",
                               absl::Seconds(1), &c->manager.default_ttl));
  RETURN_IF_ERROR(ParseSeconds(r, l, "max_ttl_seconds", "leases",
                               absl::Seconds(1), &c->manager.max_ttl));
  RETURN_IF_ERROR(ParseSeconds(r, l, "expiring_warning_seconds", "leases",
                               absl::Seconds(1), &c->manager.expiring_warning));
  RETURN_IF_ERROR(ParseSeconds(r, l, "reclaim_grace_ms", "leases",
                               absl::Milliseconds(1),
                               &c->manager.reclaim_grace));
  if (c->manager.default_ttl <= absl::ZeroDuration() ||
      c->manager.default_ttl > c->manager.max_ttl) {
    return r.Error(l, "leases.default_ttl_seconds",
                   "must be > 0 and <= max_ttl_seconds");
  }
  return absl::OkStatus();
}

// wait: starvation, the deadline cap and waiters per tenant.
absl::Status ParseWait(const ConfigReader& r, const YAML::Node& w,
                       ServerConfig* c) {
  RETURN_IF_ERROR(
      r.Keys(w, "wait", {"starvation_ms", "max_ms", "max_waiters_per_tenant"}));
  RETURN_IF_ERROR(ParseSeconds(r, w, "starvation_ms", "wait",
                               absl::Milliseconds(1), &c->manager.starvation));
  RETURN_IF_ERROR(ParseSeconds(r, w, "max_ms", "wait", absl::Milliseconds(1),
                               &c->manager.max_wait));
  if (w["max_ms"] && c->manager.max_wait <= absl::ZeroDuration()) {
    return r.Error(w["max_ms"], "wait.max_ms", "must be > 0");
  }
  RETURN_IF_ERROR(r.Get(w, "max_waiters_per_tenant", "wait",
                        &c->manager.max_waiters_per_tenant));
  if (w["max_waiters_per_tenant"] && c->manager.max_waiters_per_tenant == 0) {
    return r.Error(w["max_waiters_per_tenant"], "wait.max_waiters_per_tenant",
                   "must be >= 1");
  }
  return absl::OkStatus();
}

// watch: streams per tenant and their queues.
absl::Status ParseWatch(const ConfigReader& r, const YAML::Node& w,
                        ServerConfig* c) {
  RETURN_IF_ERROR(
      r.Keys(w, "watch", {"max_streams_per_tenant", "max_queued_events"}));
  RETURN_IF_ERROR(r.Get(w, "max_streams_per_tenant", "watch",
                        &c->manager.max_watch_streams_per_tenant));
  RETURN_IF_ERROR(
      r.Get(w, "max_queued_events", "watch", &c->manager.max_watch_queue));
  if (w["max_streams_per_tenant"] &&
      c->manager.max_watch_streams_per_tenant == 0) {
    return r.Error(w["max_streams_per_tenant"], "watch.max_streams_per_tenant",
                   "must be >= 1");
  }
  if (w["max_queued_events"] && c->manager.max_watch_queue < 2) {
    return r.Error(w["max_queued_events"], "watch.max_queued_events",
                   "must be >= 2");
  }
  return absl::OkStatus();
}

// The checks that span keys: the implicit tenant's name and reach, the
// log level and format, the tenants devices name.
absl::Status CheckAcrossKeys(const ConfigReader& r, const YAML::Node& root,
                             ServerConfig* c) {
  RETURN_IF_ERROR(r.Get(root, "implicit_tenant", "", &c->implicit_tenant));
  std::string level = "info";
  RETURN_IF_ERROR(r.Get(root, "log_level", "", &level));
  if (!ParseLogLevel(level, &c->log_level)) {
    return r.Error(root["log_level"], "log_level",
                   "must be debug, info, warn or error");
  }
  std::string format = "logfmt";
  RETURN_IF_ERROR(r.Get(root, "log_format", "", &format));
  if (!ParseLogFormat(format, &c->log_format)) {
    return r.Error(root["log_format"], "log_format", "must be logfmt or json");
  }
  if (c->implicit_tenant) {
    const YAML::Node ts = root["tenants"];
    for (size_t i = 0; ts && i < ts.size(); ++i) {
      if (c->tenants[i].name == kImplicitTenantName) {
        return r.Error(ts[i]["name"], absl::StrCat("tenants[", i, "].name"),
                       absl::StrCat("\"", kImplicitTenantName,
                                    "\" is the implicit tenant's name "
                                    "(implicit_tenant is true): rename it"));
      }
    }
    if (!c->tcp.empty() && !IsLoopback(c->tcp)) {
      return r.Error(root["implicit_tenant"], "implicit_tenant",
                     absl::StrCat("cannot be true with listen.tcp ", c->tcp,
                                  " off loopback: every caller on the network "
                                  "would be an unauthenticated admin"));
    }
  }
  if (c->tenants.empty() && !c->implicit_tenant) {
    return r.Error(
        root, "tenants",
        "no tenants and implicit_tenant is false: nobody could call");
  }
  for (size_t i = 0; c->source == "vfio" && i < c->vfio.devices.size(); ++i) {
    const std::string& owner = c->vfio.devices[i].tenant;
    if (owner.empty()) continue;
    bool known = c->implicit_tenant && owner == kImplicitTenantName;
    for (const Tenant& t : c->tenants) known |= t.name == owner;
    if (!known) {
      return r.Error(
          root["source"]["vfio"]["devices"][i]["tenant"],
          absl::StrCat("source.vfio.devices[", i, "].tenant"),
          absl::StrCat("\"", owner, "\" is not a configured tenant"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ServerConfig> Parse(absl::string_view yaml,
                                   absl::string_view name) {
  ConfigReader r(name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ":", e.mark.line + 1, ": YAML syntax: ", e.msg));
  }
  ServerConfig c = DefaultConfig();
  c.implicit_tenant = false;
  if (root.IsNull()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name,
                     ":1: tenants: the file is empty: no tenants and no "
                     "implicit_tenant, nobody could call"));
  }
  RETURN_IF_ERROR(
      r.Keys(root, "",
             {"listen", "metrics", "source", "pool", "leases", "wait", "watch",
              "isolation", "tenants", "implicit_tenant", "log_level",
              "log_format", "store"}));
  using Section =
      absl::Status (*)(const ConfigReader&, const YAML::Node&, ServerConfig*);
  for (auto [key, parse] :
       {std::pair<const char*, Section>{"isolation", ParseIsolation},
        {"store", ParseStore},
        {"listen", ParseListen},
        {"metrics", ParseMetrics},
        {"source", config_internal::ParseSource},
        {"pool", ParsePool},
        {"leases", ParseLeases},
        {"wait", ParseWait},
        {"watch", ParseWatch},
        {"tenants", config_internal::ParseTenants}}) {
    if (const YAML::Node n = root[key]) RETURN_IF_ERROR(parse(r, n, &c));
  }
  RETURN_IF_ERROR(CheckAcrossKeys(r, root, &c));
  return c;
}

}  // namespace

absl::StatusOr<ServerConfig> ParseConfig(absl::string_view yaml,
                                         absl::string_view name) {
  // yaml-cpp throws on shapes our reads do not expect (a mapping where a
  // string goes): every such case is a bad value, never a crash.
  try {
    return Parse(yaml, name);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ":", e.mark.line + 1, ": bad value: ", e.msg));
  }
}

}  // namespace physpool::server
