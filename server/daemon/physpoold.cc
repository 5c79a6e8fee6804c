// SPDX-License-Identifier: Apache-2.0
// physpoold: owns the DMA memory of the host and leases it to tenants.
// See docs/api.md and docs/operations.md; `physpoold --help` for flags.
// main reads the flags and the configuration (--check-config stops there)
// and hands the rest to Daemon's phases (daemon.h).
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/daemon/config.h"
#include "server/daemon/daemon.h"
#include "server/daemon/flags.h"
#include "server/daemon/sockets.h"
#include "util/build_info.h"

namespace physpool::server {
namespace {

// --check-config: the warnings on stderr, the effective configuration as
// YAML on stdout; valid, so exit 0.
int CheckConfig(const Flags& flags, const ServerConfig& cfg,
                const absl::StatusOr<gid_t>& socket_gid) {
  std::vector<std::string> warnings = ConfigWarnings(cfg);
  if (!socket_gid.ok()) {
    warnings.push_back(absl::StrCat(
        "listen.unix_group: ", socket_gid.status().message(),
        " on this host: physpoold refuses to start where it is missing"));
  }
  for (const std::string& w : warnings) {
    std::fprintf(stderr, "physpoold: %s: warning: %s\n", flags.config.c_str(),
                 w.c_str());
  }
  std::fputs(FormatConfig(cfg).c_str(), stdout);
  std::fprintf(stderr, "physpoold: %s: configuration is valid\n",
               flags.config.c_str());
  return 0;
}

int Run(int argc, char** argv) {
  auto flags = ParseFlags(argc, argv);
  if (!flags.ok()) {
    std::fprintf(stderr, "physpoold: %s\n",
                 std::string(flags.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<ServerConfig> cfg = EffectiveConfig(*flags);
  if (!cfg.ok()) {
    std::fprintf(stderr, "physpoold: %s\n",
                 std::string(cfg.status().message()).c_str());
    return 2;
  }
  // The group is looked up on this host: --check-config may run elsewhere
  // (CI), so there an unknown group is a warning.
  absl::StatusOr<gid_t> socket_gid = SocketGroup(*cfg);
  if (flags->check_config) return CheckConfig(*flags, *cfg, socket_gid);
  if (!socket_gid.ok()) {
    std::fprintf(
        stderr, "physpoold: %s: listen.unix_group: %s\n",
        flags->config.empty() ? "(embedded default)" : flags->config.c_str(),
        std::string(socket_gid.status().message()).c_str());
    return 2;
  }
  return Daemon(*std::move(flags), *std::move(cfg), *socket_gid).Run();
}

}  // namespace
}  // namespace physpool::server

int main(int argc, char** argv) {
  // Before anything else: no configuration read, no socket.
  if (physpool::WantsVersion(argc, argv)) {
    std::puts(physpool::VersionLine("physpoold").c_str());
    return 0;
  }
#ifdef NDEBUG
  // absl's deadlock detector builds a lock graph on every Mutex::Lock
  // (GraphCycles in the RPC path's profile, docs/performance.md): on in
  // debug and sanitizer builds, off in release ones.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  return physpool::server::Run(argc, argv);
}
