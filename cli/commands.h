// SPDX-License-Identifier: Apache-2.0
// physpoolctl's daemon commands, one file per group: cmd_pool.cc (pool
// status, pool map), cmd_segment.cc (segment ...), cmd_lease.cc (lease ...,
// release), cmd_tenant.cc (tenant ...), cmd_alloc.cc (alloc), cmd_watch.cc
// (watch, health). Each Add*Commands registers its subcommands on the root
// CLI11 app with their flags (checked by CLI11: a bad value is a usage
// error naming the flag) and says how to run each once parsed.
//
// State: a command's flag values live in the closure of its Command.
// Thread safety: one thread (the CLI). I/O: Run does the RPCs and prints
// through ctx.out. REQUIRES: Add* run before the root app parses.
#ifndef PHYSPOOL_CLI_COMMANDS_H_
#define PHYSPOOL_CLI_COMMANDS_H_

#include <functional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "cli/cli_app.h"
#include "cli/ctl_context.h"

namespace physpool::cli {

struct Command {
  CLI::App* app;  // the leaf subcommand ("pool status": status under pool)
  std::function<int(const Ctx&)> run;
  // It ends on SIGINT/SIGTERM taken by sigwait (alloc --hold, watch): the
  // signals are blocked before gRPC starts a thread, so none dies of them.
  std::function<bool()> waits_for_signal = [] { return false; };
};
using Commands = std::vector<Command>;

// The noun's subcommand ("pool"), made once; its verbs are required.
CLI::App* Noun(CLI::App* root, const std::string& name,
               const std::string& what);
// A leaf: `synopsis` and `details` lead its --help, `example` and the
// global flags and exit codes end it.
CLI::App* Leaf(CLI::App* parent, const std::string& name,
               const std::string& synopsis, const std::string& details,
               const std::string& example);

// --page-size N: items per request, 0 = the daemon's default.
void AddPageSize(CLI::App* app, int32_t* page_size, const std::string& what);

// The text of the global flags and exit codes (every --help ends with it).
extern const char kGlobalHelp[];

void AddPoolCommands(CLI::App* root, Commands* out);
void AddSegmentCommands(CLI::App* root, Commands* out);
void AddLeaseCommands(CLI::App* root, Commands* out);
void AddTenantCommands(CLI::App* root, Commands* out);
void AddAllocCommand(CLI::App* root, Commands* out);
void AddWatchCommands(CLI::App* root, Commands* out);

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_COMMANDS_H_
