// SPDX-License-Identifier: Apache-2.0
// physpoolctl's command line on CLI11: the root app, leaves with their help
// text, the checks of sizes and durations, and how a parse error becomes
// the exit code (docs/cli.md): usage errors exit 2 naming the flag or
// argument, --help prints the command's help and exits 0.
//
// State: none (the apps are the caller's). Thread safety: one thread.
// I/O: Parse writes help to stdout and errors to stderr.
// REQUIRES: nothing.
#ifndef PHYSPOOL_CLI_CLI_APP_H_
#define PHYSPOOL_CLI_CLI_APP_H_

#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"

namespace physpool::cli {

// The root: options after a subcommand fall through to it (global flags
// anywhere), exactly one command required.
void SetUpRoot(CLI::App* root);

// A subcommand whose help starts with `synopsis`, then `details` (wrapped
// to 78 columns; "\n" starts a paragraph), and ends with `footer`.
CLI::App* AddLeaf(CLI::App* parent, const std::string& name,
                  const std::string& synopsis, const std::string& details,
                  const std::string& footer);

// Flag checks: a bad value is a usage error naming the flag.
CLI::Validator SizeCheck();      // 64KiB, 1M, 4096 (cli/format.h)
CLI::Validator DurationCheck();  // 5s, 500ms, 2m, 30

// Parses `args` (without the program name). Returns the exit code when the
// process is done (help printed: 0; usage error: 2, said on stderr), or
// nullopt when a command was chosen and should run. Also: no arguments
// print the usage on stderr (2); "help CMD..." is "CMD... --help".
std::optional<int> Parse(CLI::App* root, std::vector<std::string> args);

// The leaf commands chosen by the parse, outermost first ("pool", "map").
std::vector<CLI::App*> Chosen(CLI::App* root);

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_CLI_APP_H_
