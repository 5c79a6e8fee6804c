// SPDX-License-Identifier: Apache-2.0
// physpoold's command line and the configuration start-up uses: the flags
// (--help for their text), then the file (or the embedded default) with
// the flags over it and the checks that span keys.
//
// State: none (Flags is a value). Thread safety: any thread.
// I/O: ParseFlags prints the usage and exits the process on --help;
// EffectiveConfig and ReadFile read the config file (and DefaultConfig's
// /dev/shm check).
// REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_DAEMON_FLAGS_H_
#define PHYSPOOL_SERVER_DAEMON_FLAGS_H_

#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/daemon/config.h"

namespace physpool::server {

struct Flags {
  std::string config;
  std::string ready_file;
  std::string health_listen;
  bool check_config = false;  // --check-config FILE: config is FILE
  // Overrides: set only when the flag was given.
  std::optional<std::string> unix_socket, fd_socket, tcp, metrics, sim_dir,
      log_level, log_format;
  bool insecure_tcp = false;
};

// The flags on a CLI11 app (its --help text included), bound to `*f`.
void AddFlags(CLI::App* app, Flags* f);

// The flags; INVALID_ARGUMENT naming a bad one (CLI11's message: unknown
// flags, a missing or bad value). --help prints the help and exits 0.
absl::StatusOr<Flags> ParseFlags(int argc, char** argv);

// The configuration start-up uses: the file (or the embedded default),
// then the flags, then the checks that span keys. INVALID_ARGUMENT naming
// the file, line (where there is one) and key.
absl::StatusOr<ServerConfig> EffectiveConfig(const Flags& flags);

// The file's text, or "" with *status set (the first error is kept).
std::string ReadFile(const std::string& path, absl::string_view what,
                     absl::Status* status);

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_DAEMON_FLAGS_H_
