// SPDX-License-Identifier: Apache-2.0
// physpoolctl's daemon commands (noun-verb, etcdctl style): pool, segment,
// lease, tenant, alloc, release, watch, health, and the global flags that
// reach the daemon. See docs/cli.md.
//
// State: the commands and the global flags' values, for one invocation.
// Thread safety: one thread. I/O: Run connects and makes the RPCs.
// REQUIRES: the root app outlives this; Run only after it parsed.
#ifndef PHYSPOOL_CLI_CTL_H_
#define PHYSPOOL_CLI_CTL_H_

#include <memory>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"

namespace physpool::cli {

class DaemonCommands {
 public:
  // Registers the commands and the global flags on `root`.
  explicit DaemonCommands(CLI::App* root);
  ~DaemonCommands();

  // Runs the command the parse chose; nullopt if it is none of these.
  // Returns the exit code (docs/cli.md).
  std::optional<int> Run();

  // "  pool status\n  pool map\n...": the command list for the root's help.
  std::string List() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_CTL_H_
