// physpoolctl: the physpool admin CLI. This build carries the offline
// commands; the daemon commands come with the server (see docs/cli.md).
//
// Exit codes: 0 success; 1 the command failed (e.g. a malformed trace line);
// 2 usage error (unknown command or flag, unreadable file).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/simulate.h"

namespace {

constexpr char kUsage[] = R"(physpoolctl - administer physpool

Usage:
  physpoolctl simulate [--summary] FILE|-   replay an allocation trace offline
  physpoolctl help [COMMAND]

Run 'physpoolctl help simulate' for the trace format.
)";

constexpr char kSimulateHelp[] = R"(physpoolctl simulate [--summary] FILE|-

Replays a JSON Lines trace through the allocation core (no daemon, no
memory) and prints one JSON result per alloc/free line on standard output.
'-' reads standard input. With --summary, counts per path and status and
the final occupancy of each segment go to standard error.

Trace lines (all fields but op, id, bytes, iova, pages are optional):
  {"op":"pool","page_size":4096,"strategy":"address","reserve_pages":0}
  {"op":"segment","iova":4294967296,"pages":262144,"freelist":0,"numa":0}
  {"op":"alloc","id":"a1","bytes":65536,"low":0,"high":18446744073709551615,
   "alignment":65536,"boundary":0,"max_segments":1,"preemptible":false,
   "reclaim":false,"privileged":false}
  {"op":"free","id":"a1"}
  {"op":"drain","iova":4294967296}   (also "undrain", "remove")

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
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" ||
      (args[0] == "help" && args.size() == 1)) {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "help" && args[1] == "simulate") {
    std::fputs(kSimulateHelp, stdout);
    return 0;
  }
  if (args[0] == "simulate") return Simulate({args.begin() + 1, args.end()});
  std::fprintf(stderr, "Error: unknown command \"%s\"\n\n%s", args[0].c_str(),
               kUsage);
  return 2;
}
