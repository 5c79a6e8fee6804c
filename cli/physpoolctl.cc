// SPDX-License-Identifier: Apache-2.0
// physpoolctl: the physpool admin CLI (docs/cli.md): daemon commands and
// the offline `simulate`, parsed by CLI11 (cli/cli_app.h).
//
// Exit codes: 0 success; 1 the command failed; 2 usage error; 3-7 by gRPC
// status (cli/ctl_context.h).
#include <cstdio>
#include <string>
#include <vector>

#ifdef PHYSPOOL_CTL_DAEMON
#include "cli/ctl.h"
#endif
#include "cli/cli_app.h"
#include "cli/cmd_simulate.h"
#include "util/build_info.h"

int main(int argc, char** argv) {
  if (physpool::WantsVersion(argc, argv)) {
    std::puts(physpool::VersionLine("physpoolctl").c_str());
    return 0;
  }
  CLI::App root("physpoolctl - administer physpool", "physpoolctl");
  physpool::cli::SetUpRoot(&root);
  // Shown in --help; answered above, before anything else.
  root.add_flag("--version", "print the version and exit");
  std::string commands = "Commands (physpoolctl COMMAND --help for details):\n";
#ifdef PHYSPOOL_CTL_DAEMON
  physpool::cli::DaemonCommands daemon(&root);
  commands += daemon.List();
#endif
  physpool::cli::SimulateCommand simulate =
      physpool::cli::AddSimulateCommand(&root);
  commands +=
      "  simulate\n\nExit codes: 0 ok, 1 failed, 2 usage error; 3-7 by the "
      "daemon's answer\n(see physpoolctl COMMAND --help).\n";
  root.footer(commands);
  if (auto done = physpool::cli::Parse(
          &root, std::vector<std::string>(argv + 1, argv + argc))) {
    return *done;
  }
  if (simulate.app->parsed()) return simulate.run();
#ifdef PHYSPOOL_CTL_DAEMON
  if (auto code = daemon.Run()) return *code;
#endif
  std::fputs("Error: no command\n", stderr);
  return 2;
}
