// SPDX-License-Identifier: Apache-2.0
// physpoolctl: the physpool admin CLI (docs/cli.md): daemon commands and
// the offline `simulate`.
//
// Exit codes: 0 success; 1 the command failed; 2 usage error; 3-7 by gRPC
// status (see CtlUsage).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#ifdef PHYSPOOL_CTL_DAEMON
#include "cli/ctl.h"
#endif
#include "cli/simulate.h"
#include "util/build_info.h"

namespace {

constexpr char kUsage[] = R"(physpoolctl - administer physpool

Usage: physpoolctl COMMAND [ARGS] [FLAGS]
       physpoolctl --version
)";

constexpr char kSimulateHelp[] = R"(physpoolctl simulate [--summary] FILE|-

Replays a JSON Lines trace through the allocation core (no daemon, no
memory) and prints one JSON result per alloc/free line on standard output.
'-' reads standard input. With --summary, counts per path and status and
the final occupancy of each segment go to standard error.

Each line is one JSON object in UTF-8 whose values are strings, unsigned
integers (no sign, fraction or exponent) or true/false; no key twice.
Trace lines (all fields but op, id, bytes, iova, pages are optional):
  {"op":"pool","page_size":4096,"strategy":"address","reserve_pages":0,
   "placement":"nextfit"}               (or "bestfit")
  {"op":"segment","iova":4294967296,"pages":262144,"freelist":0,"numa":0}
  {"op":"alloc","id":"a1","bytes":65536,"low":0,"high":18446744073709551615,
   "alignment":65536,"boundary":0,"max_segments":1,"preemptible":false,
   "reclaim":false,"privileged":false}
  {"op":"free","id":"a1"}
  {"op":"drain","iova":4294967296}   (also "undrain", "remove")

max_segments 0 means any number of runs, except with an alignment above one
page or a boundary: then one run, unless max_segments >= 2. An alloc with
"reclaim" that finds no free placement revokes the preemptible allocations
whose total size is least (then fewest, then the lower IOVA); they are freed
at once and listed in "reclaimed".

Example:
  printf '%s\n' '{"op":"segment","iova":0,"pages":1024}' \
    '{"op":"alloc","id":"a","bytes":65536,"alignment":65536,"max_segments":1}' |
    physpoolctl simulate -

Exit codes: 0 replayed to the end; 1 a malformed line (its number and the
reason on stderr; results of earlier lines are printed); 2 usage error.
)";

int Simulate(const std::vector<std::string>& args) {
  bool summary = false;
  std::string path;
  for (const std::string& a : args) {
    if (a == "--summary") {
      summary = true;
    } else if (a == "--help" || a == "-h") {
      std::fputs(kSimulateHelp, stdout);
      return 0;
    } else if (a.size() > 1 && a[0] == '-') {
      std::fprintf(stderr, "Error: unknown flag %s for simulate\n", a.c_str());
      return 2;
    } else if (!path.empty()) {
      std::fprintf(stderr, "Error: simulate takes one FILE (or -)\n");
      return 2;
    } else {
      path = a;
    }
  }
  if (path.empty()) {
    std::fprintf(stderr,
                 "Error: simulate needs a FILE (or - for standard input)\n");
    return 2;
  }
  std::FILE* in = path == "-" ? stdin : std::fopen(path.c_str(), "r");
  if (in == nullptr) {
    std::fprintf(stderr, "Error: cannot open %s: %s\n", path.c_str(),
                 std::strerror(errno));
    return 2;
  }
  physpool::cli::Simulator sim;
  const absl::Status s = physpool::cli::Simulate(in, stdout, &sim);
  if (in != stdin) std::fclose(in);
  if (summary) std::fputs(sim.Summary().c_str(), stderr);
  if (!s.ok()) {
    std::fprintf(stderr, "Error: %s: %s\n",
                 path == "-" ? "<stdin>" : path.c_str(),
                 std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (physpool::WantsVersion(argc, argv)) {
    std::puts(physpool::VersionLine("physpoolctl").c_str());
    return 0;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
#ifdef PHYSPOOL_CTL_DAEMON
  const std::string usage = std::string(kUsage) + physpool::cli::CtlUsage();
#else
  const std::string usage = std::string(kUsage) + "  simulate FILE|-\n";
#endif
  if (args.empty() || args[0] == "--help" || args[0] == "-h" ||
      (args[0] == "help" && args.size() == 1)) {
    std::fputs(usage.c_str(), args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "help") {  // "help pool status" = "pool status --help"
    args.erase(args.begin());
    args.push_back("--help");
  }
  if (args[0] == "simulate") return Simulate({args.begin() + 1, args.end()});
#ifdef PHYSPOOL_CTL_DAEMON
  return physpool::cli::RunCtl(args);
#else
  std::fprintf(stderr, "Error: unknown command \"%s\"\n\n%s", args[0].c_str(),
               usage.c_str());
  return 2;
#endif
}
