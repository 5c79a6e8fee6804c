#include "server/daemon/config.h"

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "util/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace physpool::server {
namespace {

// Errors carry the file, the line and the key path.
class Reader {
 public:
  explicit Reader(absl::string_view name) : name_(name) {}

  absl::Status Error(const YAML::Node& n, absl::string_view key,
                     absl::string_view why) const {
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ":", n.Mark().line + 1, ": ", key, ": ", why));
  }

  // `n` must be a map whose keys are all in `allowed`.
  absl::Status Keys(const YAML::Node& n, absl::string_view where,
                    const std::set<std::string>& allowed) const {
    if (!n.IsMap()) return Error(n, where, "must be a mapping");
    for (const auto& kv : n) {
      const std::string key = kv.first.as<std::string>();
      if (!allowed.count(key)) {
        return Error(kv.first,
                     absl::StrCat(where, where.empty() ? "" : ".", key),
                     absl::StrCat("unknown key (expected one of: ",
                                  absl::StrJoin(allowed, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Get(const YAML::Node& parent, const std::string& key,
                   absl::string_view where, T* out) const {
    const YAML::Node n = parent[key];
    if (!n) return absl::OkStatus();
    const std::string path = absl::StrCat(where, where.empty() ? "" : ".", key);
    if (!n.IsScalar()) return Error(n, path, "must be a single value");
    try {
      *out = n.as<T>();
    } catch (const YAML::Exception&) {
      return Error(n, path, absl::StrCat("bad value \"", n.Scalar(), "\""));
    }
    return absl::OkStatus();
  }

 private:
  std::string name_;
};

absl::Status ParseSeconds(const Reader& r, const YAML::Node& parent,
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

// A list of ids (uids or gids).
template <typename T>
absl::Status ParseIds(const Reader& r, const YAML::Node& parent,
                      const std::string& key, absl::string_view where,
                      std::vector<T>* out) {
  const YAML::Node n = parent[key];
  if (!n) return absl::OkStatus();
  const std::string path = absl::StrCat(where, ".", key);
  if (!n.IsSequence()) return r.Error(n, path, "must be a list of numbers");
  out->clear();
  for (const YAML::Node& id : n) {
    int64_t v = -1;
    try {
      v = id.as<int64_t>();
    } catch (const YAML::Exception&) {
    }
    if (v < 0 || v > 0xfffffffe) {
      return r.Error(id, path,
                     absl::StrCat("bad id \"", id.Scalar(),
                                  "\" (numeric uids/gids only)"));
    }
    out->push_back(static_cast<T>(v));
  }
  return absl::OkStatus();
}

absl::Status ParseFdAccess(const Reader& r, const YAML::Node& a,
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

absl::Status ParseVfio(const Reader& r, const YAML::Node& v,
                       vfio::VfioConfig* out) {
  const std::string w = "source.vfio";
  RETURN_IF_ERROR(r.Keys(
      v, w,
      {"devices", "page_size", "backing", "dir", "pool", "max_segment_bytes",
       "iova_base", "group_busy_timeout_ms", "keeper"}));
  vfio::LayoutConfig& l = out->layout;
  RETURN_IF_ERROR(r.Get(v, "page_size", w, &l.page_size));
  if (l.page_size != 4096 && l.page_size != (2 << 20) &&
      l.page_size != (1 << 30)) {
    return r.Error(v["page_size"], w + ".page_size",
                   "must be 4096, 2097152 (2 MiB) or 1073741824 (1 GiB)");
  }
  const uint64_t ps = l.page_size;
  auto page_multiple = [&](const YAML::Node& parent, const std::string& key,
                           const std::string& where, uint64_t* value,
                           bool zero_ok) -> absl::Status {
    RETURN_IF_ERROR(r.Get(parent, key, where, value));
    if (parent[key] && ((*value == 0 && !zero_ok) || *value % ps != 0)) {
      return r.Error(parent[key], where + "." + key,
                     absl::StrCat("must be a ", zero_ok ? "" : "positive ",
                                  "multiple of the page size ", ps));
    }
    return absl::OkStatus();
  };
  std::string backing = "file";
  RETURN_IF_ERROR(r.Get(v, "backing", w, &backing));
  if (backing == "file") {
    out->backing = vfio::BackingKind::kFile;
  } else if (backing == "memfd") {
    out->backing = vfio::BackingKind::kMemfd;
  } else {
    return r.Error(v["backing"], w + ".backing", "must be file or memfd");
  }
  RETURN_IF_ERROR(r.Get(v, "dir", w, &out->dir));
  RETURN_IF_ERROR(r.Get(v, "keeper", w, &out->keeper));
  if (!out->keeper.empty() && out->backing != vfio::BackingKind::kMemfd) {
    return r.Error(v["keeper"], w + ".keeper",
                   "needs backing: memfd (file backing survives a restart by "
                   "itself)");
  }
  if (!out->keeper.empty() && out->keeper[0] != '/') {
    return r.Error(v["keeper"], w + ".keeper", "must be an absolute path");
  }
  RETURN_IF_ERROR(
      page_multiple(v, "max_segment_bytes", w, &l.max_segment_bytes, false));
  RETURN_IF_ERROR(page_multiple(v, "iova_base", w, &l.iova_base, true));
  RETURN_IF_ERROR(ParseSeconds(r, v, "group_busy_timeout_ms", w,
                               absl::Milliseconds(1),
                               &out->group_busy_timeout));
  const YAML::Node devs = v["devices"];
  if (!devs || !devs.IsSequence() || devs.size() == 0) {
    return r.Error(devs ? devs : v, w + ".devices",
                   "must be a non-empty list of {bdf, dma_limit}");
  }
  out->devices.clear();
  l.dma_limits.clear();
  for (size_t i = 0; i < devs.size(); ++i) {
    const std::string where = absl::StrCat(w, ".devices[", i, "]");
    RETURN_IF_ERROR(r.Keys(devs[i], where, {"bdf", "dma_limit", "tenant"}));
    vfio::VfioDevice d;
    RETURN_IF_ERROR(r.Get(devs[i], "bdf", where, &d.bdf));
    RETURN_IF_ERROR(r.Get(devs[i], "tenant", where, &d.tenant));
    if (devs[i]["tenant"] && d.tenant.empty()) {
      return r.Error(devs[i]["tenant"], where + ".tenant",
                     "must name a tenant (leave it out for a pool-wide "
                     "device)");
    }
    for (const vfio::VfioDevice& other : out->devices) {
      if (other.bdf == d.bdf) {
        return r.Error(devs[i]["bdf"], where + ".bdf",
                       "device " + d.bdf + " is listed twice");
      }
    }
    if (d.bdf.empty() || d.bdf.find('/') != std::string::npos) {
      return r.Error(devs[i], where + ".bdf",
                     "must be a PCI address like 0000:00:01.0");
    }
    RETURN_IF_ERROR(
        page_multiple(devs[i], "dma_limit", where, &d.dma_limit, true));
    if (d.dma_limit) l.dma_limits.push_back(d.dma_limit);
    out->devices.push_back(d);
  }
  const YAML::Node pool = v["pool"];
  if (!pool || !pool.IsSequence() || pool.size() == 0) {
    return r.Error(pool ? pool : v, w + ".pool",
                   "must be a non-empty list of {numa, bytes, low_bytes}");
  }
  l.pool.clear();
  for (size_t i = 0; i < pool.size(); ++i) {
    const std::string where = absl::StrCat(w, ".pool[", i, "]");
    RETURN_IF_ERROR(r.Keys(pool[i], where, {"numa", "bytes", "low_bytes"}));
    vfio::PoolShare share;
    RETURN_IF_ERROR(r.Get(pool[i], "numa", where, &share.numa));
    if (share.numa < 0 || share.numa >= 128) {
      return r.Error(pool[i]["numa"], where + ".numa", "must be 0 to 127");
    }
    if (!pool[i]["bytes"]) {
      return r.Error(pool[i], where + ".bytes", "is required");
    }
    RETURN_IF_ERROR(
        page_multiple(pool[i], "bytes", where, &share.bytes, false));
    if (pool[i]["low_bytes"]) {
      uint64_t low = 0;
      RETURN_IF_ERROR(page_multiple(pool[i], "low_bytes", where, &low, true));
      if (low > share.bytes) {
        return r.Error(pool[i]["low_bytes"], where + ".low_bytes",
                       "must not exceed bytes");
      }
      if (low > 0 && l.dma_limits.empty()) {
        return r.Error(pool[i]["low_bytes"], where + ".low_bytes",
                       "needs a device with a dma_limit");
      }
      share.low_bytes = low;
    }
    l.pool.push_back(share);
  }
  return absl::OkStatus();
}

}  // namespace

namespace {
// The key paths under which `a` and `b` differ.
void Differences(const YAML::Node& a, const YAML::Node& b,
                 const std::string& path, std::vector<std::string>* out) {
  if (a.IsMap() && b.IsMap()) {
    std::set<std::string> keys;
    for (const auto& kv : a) keys.insert(kv.first.as<std::string>());
    for (const auto& kv : b) keys.insert(kv.first.as<std::string>());
    for (const std::string& k : keys) {
      Differences(a[k], b[k], path.empty() ? k : path + "." + k, out);
    }
    return;
  }
  if (YAML::Dump(a) != YAML::Dump(b)) out->push_back(path);
}
}  // namespace

std::vector<std::string> ChangedKeysButTenants(const ServerConfig& a,
                                               const ServerConfig& b) {
  ServerConfig x = a, y = b;
  x.tenants.clear();
  y.tenants.clear();
  std::vector<std::string> out;
  Differences(YAML::Load(FormatConfig(x)), YAML::Load(FormatConfig(y)), "",
              &out);
  return out;
}

std::vector<std::string> ConfigWarnings(const ServerConfig& c) {
  std::vector<std::string> w;
  const std::string mode = absl::StrFormat("%04o", c.unix_mode);
  if (c.implicit_tenant && c.unix_socket.empty()) {
    w.push_back(
        "implicit_tenant: true, but listen.unix is \"\": the implicit tenant "
        "answers on the unix socket only, so nobody reaches it");
  } else if (c.implicit_tenant && (c.unix_mode & 0006) != 0) {
    w.push_back(absl::StrCat(
        "implicit_tenant: true with listen.unix_mode ", mode,
        ": every local user who can reach ", c.unix_socket,
        " is an unauthenticated admin; set listen.unix_mode to 0660 or "
        "0600 (and listen.unix_group), or give tenants tokens"));
  } else if (c.implicit_tenant) {
    w.push_back(absl::StrCat(
        "implicit_tenant: true: every process that can open ", c.unix_socket,
        " (mode ", mode, ", group ",
        c.unix_group.empty() ? "the daemon's" : c.unix_group, ") is tenant \"",
        kImplicitTenantName,
        "\" with admin rights; TCP callers need a token or a client "
        "certificate"));
  }
  if (!c.unix_socket.empty() && (c.unix_mode & 0006) != 0) {
    w.push_back(absl::StrCat("listen.unix_mode ", mode,
                             ": any local user can connect to ", c.unix_socket,
                             " and to the fd socket"));
  }
  return w;
}

bool IsLoopback(const std::string& hostport) {
  return absl::StartsWith(hostport, "127.") ||
         absl::StartsWith(hostport, "localhost:") ||
         absl::StartsWith(hostport, "[::1]:");
}

absl::Status CheckListeners(const ServerConfig& c) {
  if (c.implicit_tenant && !c.tcp.empty() && !IsLoopback(c.tcp)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the implicit tenant (no authentication, admin) cannot serve TCP off "
        "loopback (",
        c.tcp, "): configure tenants with tokens, or listen on 127.0.0.1"));
  }
  if (!c.tcp.empty() && !IsLoopback(c.tcp) && c.tls_cert.empty() &&
      !c.insecure_tcp) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing TCP off loopback without TLS (", c.tcp,
                     "): configure listen.tls or pass --insecure-tcp"));
  }
  return absl::OkStatus();
}

std::string DefaultRuntimeDir() {
  if (geteuid() == 0) return "/run/physpool";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR");
      xdg != nullptr && *xdg) {
    return absl::StrCat(xdg, "/physpool");
  }
  return absl::StrCat("/tmp/physpool-", geteuid());
}

ServerConfig DefaultConfig() {
  ServerConfig c;
  const std::string run = DefaultRuntimeDir();
  c.unix_socket = run + "/physpool.sock";
  c.tcp = "127.0.0.1:7600";
  c.metrics = "127.0.0.1:9464";
  c.sim =
      vfio::DefaultSimConfig(access("/dev/shm", W_OK) == 0
                                 ? absl::StrCat("/dev/shm/physpool-", geteuid())
                                 : run + "/sim");
  c.implicit_tenant = true;
  c.store_path = run + "/leases.db";
  return c;
}

namespace {
absl::StatusOr<ServerConfig> Parse(absl::string_view yaml,
                                   absl::string_view name);
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

namespace {
absl::StatusOr<ServerConfig> Parse(absl::string_view yaml,
                                   absl::string_view name) {
  Reader r(name);
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
  RETURN_IF_ERROR(r.Keys(
      root, "",
      {"listen", "metrics", "source", "pool", "leases", "wait", "watch",
       "isolation", "tenants", "implicit_tenant", "log_level", "store"}));
  if (const YAML::Node iso = root["isolation"]) {
    RETURN_IF_ERROR(r.Keys(iso, "isolation", {"mode", "scan_interval_ms"}));
    RETURN_IF_ERROR(r.Get(iso, "mode", "isolation", &c.isolation));
    if (c.isolation != "required" && c.isolation != "preferred" &&
        c.isolation != "off") {
      return r.Error(iso["mode"], "isolation.mode",
                     "must be required, preferred or off");
    }
    RETURN_IF_ERROR(ParseSeconds(r, iso, "scan_interval_ms", "isolation",
                                 absl::Milliseconds(1),
                                 &c.manager.quarantine_scan));
    if (iso["scan_interval_ms"] &&
        (c.manager.quarantine_scan < absl::Milliseconds(10) ||
         c.manager.quarantine_scan > absl::Minutes(10))) {
      return r.Error(iso["scan_interval_ms"], "isolation.scan_interval_ms",
                     "must be 10 to 600000");
    }
  }
  if (const YAML::Node st = root["store"]) {
    RETURN_IF_ERROR(r.Keys(st, "store", {"path", "boot_id_file"}));
    RETURN_IF_ERROR(r.Get(st, "path", "store", &c.store_path));
    RETURN_IF_ERROR(r.Get(st, "boot_id_file", "store", &c.boot_id_file));
  }
  if (const YAML::Node l = root["listen"]) {
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
      c.unix_mode = mode;
    }
    RETURN_IF_ERROR(r.Get(l, "unix_group", "listen", &c.unix_group));
    if (const YAML::Node a = l["fd_socket_access"]) {
      RETURN_IF_ERROR(ParseFdAccess(r, a, &c.fd_access));
    }
    RETURN_IF_ERROR(r.Get(l, "unix", "listen", &c.unix_socket));
    RETURN_IF_ERROR(r.Get(l, "fd_socket", "listen", &c.fd_socket));
    RETURN_IF_ERROR(r.Get(l, "tcp", "listen", &c.tcp));
    RETURN_IF_ERROR(r.Get(l, "insecure_tcp", "listen", &c.insecure_tcp));
    if (const YAML::Node t = l["tls"]) {
      RETURN_IF_ERROR(r.Keys(t, "listen.tls", {"cert", "key", "client_ca"}));
      RETURN_IF_ERROR(r.Get(t, "cert", "listen.tls", &c.tls_cert));
      RETURN_IF_ERROR(r.Get(t, "key", "listen.tls", &c.tls_key));
      RETURN_IF_ERROR(r.Get(t, "client_ca", "listen.tls", &c.tls_client_ca));
      if (c.tls_cert.empty() != c.tls_key.empty()) {
        return r.Error(t, "listen.tls", "cert and key go together");
      }
    }
  }
  if (const YAML::Node m = root["metrics"]) {
    RETURN_IF_ERROR(r.Keys(m, "metrics", {"listen"}));
    RETURN_IF_ERROR(r.Get(m, "listen", "metrics", &c.metrics));
  }
  if (const YAML::Node s = root["source"]) {
    RETURN_IF_ERROR(r.Keys(s, "source", {"type", "sim", "vfio"}));
    RETURN_IF_ERROR(r.Get(s, "type", "source", &c.source));
    if (c.source != "sim" && c.source != "vfio") {
      return r.Error(
          s["type"], "source.type",
          absl::StrCat("\"", c.source,
                       "\" is not available (expected sim or vfio)"));
    }
    if (c.source == "vfio" && !s["vfio"]) {
      return r.Error(s, "source.vfio", "is required with type vfio");
    }
    if (const YAML::Node v = s["vfio"])
      RETURN_IF_ERROR(ParseVfio(r, v, &c.vfio));
    if (const YAML::Node sim = s["sim"]) {
      RETURN_IF_ERROR(r.Keys(sim, "source.sim",
                             {"dir", "page_size", "base_iova", "segments"}));
      RETURN_IF_ERROR(r.Get(sim, "dir", "source.sim", &c.sim.dir));
      RETURN_IF_ERROR(r.Get(sim, "page_size", "source.sim", &c.sim.page_size));
      RETURN_IF_ERROR(r.Get(sim, "base_iova", "source.sim", &c.sim.base_iova));
      const uint64_t ps = c.sim.page_size;
      if (ps < 4096 || (ps & (ps - 1)) != 0 || ps > (uint64_t{1} << 30)) {
        return r.Error(sim["page_size"], "source.sim.page_size",
                       "must be a power of two from 4096 to 1073741824");
      }
      if (const YAML::Node segs = sim["segments"]) {
        if (!segs.IsSequence() || segs.size() == 0) {
          return r.Error(segs, "source.sim.segments",
                         "must be a non-empty list");
        }
        c.sim.segments.clear();
        for (size_t i = 0; i < segs.size(); ++i) {
          const std::string where =
              absl::StrCat("source.sim.segments[", i, "]");
          RETURN_IF_ERROR(
              r.Keys(segs[i], where, {"bytes", "freelist", "numa"}));
          vfio::SimSegmentConfig seg;
          RETURN_IF_ERROR(r.Get(segs[i], "bytes", where, &seg.bytes));
          RETURN_IF_ERROR(r.Get(segs[i], "freelist", where, &seg.freelist));
          RETURN_IF_ERROR(r.Get(segs[i], "numa", where, &seg.numa));
          if (seg.bytes == 0 || seg.bytes % ps != 0) {
            return r.Error(
                segs[i], where + ".bytes",
                absl::StrCat("must be a positive multiple of the page size ",
                             ps));
          }
          c.sim.segments.push_back(seg);
        }
      }
    }
  }
  if (const YAML::Node p = root["pool"]) {
    RETURN_IF_ERROR(
        r.Keys(p, "pool", {"strategy", "reserve_bytes", "placement"}));
    std::string strategy = "address";
    RETURN_IF_ERROR(r.Get(p, "strategy", "pool", &strategy));
    if (strategy == "address") {
      c.manager.strategy = pglist::Strategy::kAddress;
    } else if (strategy == "bigfirst") {
      c.manager.strategy = pglist::Strategy::kBigFirst;
    } else {
      return r.Error(p["strategy"], "pool.strategy",
                     "must be address or bigfirst");
    }
    RETURN_IF_ERROR(
        r.Get(p, "reserve_bytes", "pool", &c.manager.reserve_bytes));
    std::string placement = "nextfit";
    RETURN_IF_ERROR(r.Get(p, "placement", "pool", &placement));
    if (auto pl = pglist::ParsePlacement(placement)) {
      c.manager.placement = *pl;
    } else {
      return r.Error(p["placement"], "pool.placement",
                     "must be nextfit or bestfit");
    }
  }
  if (const YAML::Node l = root["leases"]) {
    RETURN_IF_ERROR(r.Keys(
        l, "leases",
        {"default_ttl_seconds", "max_ttl_seconds", "expiring_warning_seconds",
         "reclaim_grace_ms", "max_runs_per_lease"}));
    RETURN_IF_ERROR(r.Get(l, "max_runs_per_lease", "leases",
                          &c.manager.max_runs_per_lease));
    if (l["max_runs_per_lease"] && (c.manager.max_runs_per_lease == 0 ||
                                    c.manager.max_runs_per_lease > 65536)) {
      return r.Error(l["max_runs_per_lease"], "leases.max_runs_per_lease",
                     "must be 1 to 65536 (a lease's answer must stay below "
                     "gRPC's 4 MiB)");
    }
    RETURN_IF_ERROR(ParseSeconds(r, l, "default_ttl_seconds", "leases",
                                 absl::Seconds(1), &c.manager.default_ttl));
    RETURN_IF_ERROR(ParseSeconds(r, l, "max_ttl_seconds", "leases",
                                 absl::Seconds(1), &c.manager.max_ttl));
    RETURN_IF_ERROR(ParseSeconds(r, l, "expiring_warning_seconds", "leases",
                                 absl::Seconds(1),
                                 &c.manager.expiring_warning));
    RETURN_IF_ERROR(ParseSeconds(r, l, "reclaim_grace_ms", "leases",
                                 absl::Milliseconds(1),
                                 &c.manager.reclaim_grace));
    if (c.manager.default_ttl <= absl::ZeroDuration() ||
        c.manager.default_ttl > c.manager.max_ttl) {
      return r.Error(l, "leases.default_ttl_seconds",
                     "must be > 0 and <= max_ttl_seconds");
    }
  }
  if (const YAML::Node w = root["wait"]) {
    RETURN_IF_ERROR(r.Keys(
        w, "wait", {"starvation_ms", "max_ms", "max_waiters_per_tenant"}));
    RETURN_IF_ERROR(ParseSeconds(r, w, "starvation_ms", "wait",
                                 absl::Milliseconds(1), &c.manager.starvation));
    RETURN_IF_ERROR(ParseSeconds(r, w, "max_ms", "wait", absl::Milliseconds(1),
                                 &c.manager.max_wait));
    if (w["max_ms"] && c.manager.max_wait <= absl::ZeroDuration()) {
      return r.Error(w["max_ms"], "wait.max_ms", "must be > 0");
    }
    RETURN_IF_ERROR(r.Get(w, "max_waiters_per_tenant", "wait",
                          &c.manager.max_waiters_per_tenant));
    if (w["max_waiters_per_tenant"] && c.manager.max_waiters_per_tenant == 0) {
      return r.Error(w["max_waiters_per_tenant"], "wait.max_waiters_per_tenant",
                     "must be >= 1");
    }
  }
  if (const YAML::Node w = root["watch"]) {
    RETURN_IF_ERROR(
        r.Keys(w, "watch", {"max_streams_per_tenant", "max_queued_events"}));
    RETURN_IF_ERROR(r.Get(w, "max_streams_per_tenant", "watch",
                          &c.manager.max_watch_streams_per_tenant));
    RETURN_IF_ERROR(
        r.Get(w, "max_queued_events", "watch", &c.manager.max_watch_queue));
    if (w["max_streams_per_tenant"] &&
        c.manager.max_watch_streams_per_tenant == 0) {
      return r.Error(w["max_streams_per_tenant"],
                     "watch.max_streams_per_tenant", "must be >= 1");
    }
    if (w["max_queued_events"] && c.manager.max_watch_queue < 2) {
      return r.Error(w["max_queued_events"], "watch.max_queued_events",
                     "must be >= 2");
    }
  }
  // Where each token hash and certificate name was given, to refuse the
  // second (a token must name exactly one tenant).
  std::map<std::string, std::string> token_owner, cn_owner;
  if (const YAML::Node ts = root["tenants"]) {
    if (!ts.IsSequence()) return r.Error(ts, "tenants", "must be a list");
    std::set<std::string> names;
    for (size_t i = 0; i < ts.size(); ++i) {
      const std::string where = absl::StrCat("tenants[", i, "]");
      RETURN_IF_ERROR(r.Keys(ts[i], where,
                             {"name", "token_sha256", "cert_common_names",
                              "roles", "max_bytes", "max_leases"}));
      Tenant t;
      RETURN_IF_ERROR(r.Get(ts[i], "name", where, &t.name));
      if (t.name.empty()) return r.Error(ts[i], where + ".name", "is required");
      if (t.name.size() > 128) {
        return r.Error(ts[i]["name"], where + ".name",
                       "is longer than 128 bytes");
      }
      if (!names.insert(t.name).second) {
        return r.Error(ts[i]["name"], where + ".name", "duplicate tenant name");
      }
      for (const char* list : {"token_sha256", "cert_common_names", "roles"}) {
        const YAML::Node n = ts[i][list];
        if (!n) continue;
        if (!n.IsSequence())
          return r.Error(n, absl::StrCat(where, ".", list), "must be a list");
        for (const auto& v : n) {
          const std::string s = v.as<std::string>();
          if (std::string(list) == "token_sha256") {
            if (!IsSha256Hex(s)) {
              return r.Error(
                  v, where + ".token_sha256",
                  "must be 64 lowercase hex digits (sha256sum of the token)");
            }
            auto [it, fresh] = token_owner.emplace(s, t.name);
            if (!fresh) {
              return r.Error(
                  v, where + ".token_sha256",
                  absl::StrCat("this token hash is also given for "
                               "tenant \"",
                               it->second, "\": a token must name one tenant"));
            }
            t.token_sha256.push_back(s);
          } else if (std::string(list) == "cert_common_names") {
            auto [it, fresh] = cn_owner.emplace(s, t.name);
            if (!fresh) {
              return r.Error(
                  v, where + ".cert_common_names",
                  absl::StrCat("\"", s, "\" is also given for tenant \"",
                               it->second, "\""));
            }
            t.cert_common_names.push_back(s);
          }
        }
      }
      if (const YAML::Node roles = ts[i]["roles"]) {
        std::vector<std::string> names_list;
        for (const auto& v : roles) names_list.push_back(v.as<std::string>());
        auto parsed = ParseRoles(names_list);
        if (!parsed.ok())
          return r.Error(roles, where + ".roles", parsed.status().message());
        t.roles = *parsed;
      }
      RETURN_IF_ERROR(r.Get(ts[i], "max_bytes", where, &t.limits.max_bytes));
      RETURN_IF_ERROR(r.Get(ts[i], "max_leases", where, &t.limits.max_leases));
      if (t.token_sha256.empty() && t.cert_common_names.empty()) {
        return r.Error(ts[i], where, "needs token_sha256 or cert_common_names");
      }
      c.tenants.push_back(std::move(t));
    }
  }
  RETURN_IF_ERROR(r.Get(root, "implicit_tenant", "", &c.implicit_tenant));
  std::string level = "info";
  RETURN_IF_ERROR(r.Get(root, "log_level", "", &level));
  if (!ParseLogLevel(level, &c.log_level)) {
    return r.Error(root["log_level"], "log_level",
                   "must be debug, info, warn or error");
  }
  if (c.implicit_tenant) {
    const YAML::Node ts = root["tenants"];
    for (size_t i = 0; ts && i < ts.size(); ++i) {
      if (c.tenants[i].name == kImplicitTenantName) {
        return r.Error(ts[i]["name"], absl::StrCat("tenants[", i, "].name"),
                       absl::StrCat("\"", kImplicitTenantName,
                                    "\" is the implicit tenant's name "
                                    "(implicit_tenant is true): rename it"));
      }
    }
    if (!c.tcp.empty() && !IsLoopback(c.tcp)) {
      return r.Error(root["implicit_tenant"], "implicit_tenant",
                     absl::StrCat("cannot be true with listen.tcp ", c.tcp,
                                  " off loopback: every caller on the network "
                                  "would be an unauthenticated admin"));
    }
  }
  if (c.tenants.empty() && !c.implicit_tenant) {
    return r.Error(
        root, "tenants",
        "no tenants and implicit_tenant is false: nobody could call");
  }
  for (size_t i = 0; c.source == "vfio" && i < c.vfio.devices.size(); ++i) {
    const std::string& owner = c.vfio.devices[i].tenant;
    if (owner.empty()) continue;
    bool known = c.implicit_tenant && owner == kImplicitTenantName;
    for (const Tenant& t : c.tenants) known |= t.name == owner;
    if (!known) {
      return r.Error(
          root["source"]["vfio"]["devices"][i]["tenant"],
          absl::StrCat("source.vfio.devices[", i, "].tenant"),
          absl::StrCat("\"", owner, "\" is not a configured tenant"));
    }
  }
  return c;
}

}  // namespace

}  // namespace physpool::server

namespace physpool::server {
namespace {

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

}  // namespace

std::string FormatConfig(const ServerConfig& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
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

  out << YAML::Key << "metrics" << YAML::Value << YAML::BeginMap;
  Text(out, "listen", c.metrics);
  out << YAML::EndMap;

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
  if (c.source == "vfio") {
    const vfio::VfioConfig& v = c.vfio;
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
  out << YAML::EndMap;

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

  out << YAML::Key << "tenants" << YAML::Value << YAML::BeginSeq;
  for (const Tenant& t : c.tenants) {
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
  Key(out, "implicit_tenant", c.implicit_tenant);
  Text(out, "log_level", LevelName(c.log_level));
  out << YAML::Key << "store" << YAML::Value << YAML::BeginMap;
  Text(out, "path", c.store_path);
  Text(out, "boot_id_file", c.boot_id_file);
  out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace physpool::server
