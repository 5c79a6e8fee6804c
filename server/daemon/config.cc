// SPDX-License-Identifier: Apache-2.0
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

}  // namespace physpool::server
