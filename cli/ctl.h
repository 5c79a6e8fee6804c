// SPDX-License-Identifier: Apache-2.0
// physpoolctl's daemon commands (noun-verb, etcdctl style): pool, segment,
// lease, tenant, alloc, release, watch, health. See docs/cli.md.
#ifndef PHYSPOOL_CLI_CTL_H_
#define PHYSPOOL_CLI_CTL_H_

#include <string>
#include <vector>

namespace physpool::cli {

// Runs one command; returns the process exit code (docs/cli.md).
int RunCtl(const std::vector<std::string>& args);
// The command list and global flags, for --help.
std::string CtlUsage();

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_CTL_H_
