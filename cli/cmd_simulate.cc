// SPDX-License-Identifier: Apache-2.0
#include "cli/cmd_simulate.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "cli/cli_app.h"
#include "cli/simulate.h"

namespace physpool::cli {
namespace {

constexpr char kDetails[] =
    "Replays a JSON Lines trace through the allocation core (no daemon, no "
    "memory) and prints one JSON result per alloc/free line on standard "
    "output. '-' reads standard input. With --summary, counts per path and "
    "status and the final occupancy of each segment go to standard error.";

constexpr char kFooter[] =
    R"(Each line is one JSON object in UTF-8 whose values are strings, unsigned
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

struct Flags {
  bool summary = false;
  std::string path;
};

int Run(const Flags& f) {
  std::FILE* in = f.path == "-" ? stdin : std::fopen(f.path.c_str(), "r");
  if (in == nullptr) {
    std::fprintf(stderr, "Error: cannot open %s: %s\n", f.path.c_str(),
                 std::strerror(errno));
    return 2;
  }
  Simulator sim;
  const absl::Status s = Simulate(in, stdout, &sim);
  if (in != stdin) std::fclose(in);
  if (f.summary) std::fputs(sim.Summary().c_str(), stderr);
  if (!s.ok()) {
    std::fprintf(stderr, "Error: %s: %s\n",
                 f.path == "-" ? "<stdin>" : f.path.c_str(),
                 std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace

SimulateCommand AddSimulateCommand(CLI::App* root) {
  auto f = std::make_shared<Flags>();
  CLI::App* app =
      AddLeaf(root, "simulate", "physpoolctl simulate [--summary] FILE|-",
              kDetails, kFooter);
  app->add_flag("--summary", f->summary,
                "counts and final occupancy on stderr");
  app->add_option("FILE", f->path, "the trace, or - for standard input")
      ->required();
  return {app, [f] { return Run(*f); }};
}

}  // namespace physpool::cli
