// SPDX-License-Identifier: Apache-2.0
// physpoold's configuration: one YAML file, flags override it. Every
// unknown key and bad value is an error naming the file, line, key and
// reason. With no file, the embedded default: the sim source (1 GiB), one
// implicit admin tenant, a unix socket in a user-writable runtime dir and
// TCP on 127.0.0.1.
//
// State: none (ServerConfig is a value).
// Thread safety: any thread; DefaultRuntimeDir and DefaultConfig (so also
// ParseConfig) read the environment (XDG_RUNTIME_DIR) and the euid.
// I/O: DefaultConfig checks whether /dev/shm is writable; nothing else
// (ParseConfig takes the file's text; FormatConfig opens nothing).
// REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_CONFIG_H_
#define PHYSPOOL_SERVER_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/log.h"
#include "server/core/options.h"
#include "server/lease/tenants.h"
#include "vfio/sim_source.h"
#include "vfio/vfio_source.h"

namespace physpool::server {

struct ServerConfig {
  std::string unix_socket;  // "" disables
  // Who may connect to the unix socket and the fd socket: their mode and
  // group (a name or a number; "" = the daemon's group). The implicit
  // tenant is whoever may connect (docs/security.md).
  uint32_t unix_mode = 0660;
  std::string unix_group;
  std::string tcp;            // host:port; "" disables
  bool insecure_tcp = false;  // allow TCP off loopback without TLS
  std::string tls_cert, tls_key, tls_client_ca;
  std::string metrics;        // host:port; "" disables
  std::string fd_socket;      // device/backing fds; "" = unix_socket + ".fds"
  FdSocketOptions fd_access;  // listen.fd_socket_access
  std::string source = "sim";
  vfio::SimConfig sim;
  vfio::VfioConfig vfio;
  ManagerOptions manager;
  // Per-lease CPU views (docs/vfio.md): "required" refuses to start where
  // the source cannot make them, "preferred" runs with isolation off
  // there (logged, GetPoolInfo, physpool_isolation), "off" never makes
  // them (segment fds).
  std::string isolation = "required";
  std::vector<Tenant> tenants;
  bool implicit_tenant = false;  // every caller is tenant "default" (admin)
  std::string store_path;        // the lease store; "" = nothing persists
  std::string boot_id_file = "/proc/sys/kernel/random/boot_id";
  LogLevel log_level = LogLevel::kInfo;
  LogFormat log_format = LogFormat::kLogfmt;  // applies at start only
};

// host:port on 127.x, localhost or [::1].
bool IsLoopback(const std::string& hostport);

// After flags override the file: the implicit tenant never listens off
// loopback; TCP off loopback needs TLS or insecure_tcp. INVALID_ARGUMENT
// saying why.
absl::Status CheckListeners(const ServerConfig& c);

// The runtime directory: /run/physpool as root, else $XDG_RUNTIME_DIR/physpool
// or /tmp/physpool-<uid>.
std::string DefaultRuntimeDir();

// The keys whose values differ between `a` and `b` ("listen.tcp",
// "leases.default_ttl_seconds", ...), the tenants section aside: what a
// reload (SIGHUP) cannot apply without a restart.
std::vector<std::string> ChangedKeysButTenants(const ServerConfig& a,
                                               const ServerConfig& b);

// What --check-config and the start-up log warn of: a configuration that
// is valid but exposes more than an operator may mean to (the implicit
// tenant reached by every process that can open a world-accessible
// socket, ...). Each a sentence naming the keys.
std::vector<std::string> ConfigWarnings(const ServerConfig& c);

// The embedded default (no config file).
ServerConfig DefaultConfig();

// Parses a config file's text over the defaults. INVALID_ARGUMENT
// "<name>:<line>: <key>: <reason>" for any unknown key or bad value.
absl::StatusOr<ServerConfig> ParseConfig(absl::string_view yaml,
                                         absl::string_view name);

// The config as YAML with every key ParseConfig knows, defaults filled in
// (what `physpoold --check-config` prints). ParseConfig accepts the result
// and gives back an equal config, so formatting it again gives the same
// text. Token hashes are printed (they are not secrets); nothing else is
// read (TLS files, devices are named, not opened).
std::string FormatConfig(const ServerConfig& config);

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_CONFIG_H_
