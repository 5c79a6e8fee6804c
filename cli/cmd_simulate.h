// SPDX-License-Identifier: Apache-2.0
// physpoolctl simulate: replays a JSON Lines trace through the allocation
// core (cli/simulate.h), offline: no daemon, no memory.
//
// State: the flag values, in the returned closure. Thread safety: one
// thread. I/O: Run reads the trace file (or stdin) and prints results.
// REQUIRES: the root app outlives the command.
#ifndef PHYSPOOL_CLI_CMD_SIMULATE_H_
#define PHYSPOOL_CLI_CMD_SIMULATE_H_

#include <functional>

#include "CLI/CLI.hpp"

namespace physpool::cli {

struct SimulateCommand {
  CLI::App* app;
  std::function<int()> run;  // the exit code: 0, 1 (a bad line), 2
};

SimulateCommand AddSimulateCommand(CLI::App* root);

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_CMD_SIMULATE_H_
