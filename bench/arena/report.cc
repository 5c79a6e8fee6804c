// SPDX-License-Identifier: Apache-2.0
#include "bench/arena/report.h"

#include <sched.h>

#include <cinttypes>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "bench/figures.h"

namespace physpool::bench {
namespace {

std::string Pct(double fraction) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.1f %%", 100 * fraction);
  return b;
}

// The source tree's commit, and whether it has uncommitted changes.
std::string Commit() {
  const std::string git = "git -C '" PHYSPOOL_SOURCE_DIR "' ";
  const testing::RunResult head = testing::RunCommand(git + "rev-parse HEAD");
  if (head.code != 0) return "unknown (not a git checkout)";
  const testing::RunResult dirty =
      testing::RunCommand(git + "status --porcelain");
  return absl::StrCat(absl::StripAsciiWhitespace(head.output),
                      dirty.output.empty() ? "" : " + uncommitted changes");
}

// One row of the targets' table: `ratio` against `limit` (<= or >=).
void Target(const std::string& what, double ratio, double a, double b,
            bool at_most, double limit) {
  const bool met = at_most ? ratio <= limit : ratio >= limit;
  std::printf("| %s | %.3g× (%s µs vs %s µs) | %s |\n", what.c_str(), ratio,
              Us(a).c_str(), Us(b).c_str(), met ? "met" : "**NOT met**");
}

const RunSummary* WithThreads(const std::vector<RunSummary>& runs, int n) {
  for (const RunSummary& r : runs) {
    if (r.name == "arena" && r.threads == n) return &r;
  }
  return nullptr;
}

// The targets against rte_malloc: the arena's 1-thread run `one`, `dpdk`.
void PrintDpdkTargets(const RunSummary& one, const RunSummary& dpdk) {
  for (const auto& [classes, label] :
       {std::make_pair(kAllClasses, "all requests"),
        std::make_pair(kPlainAndAligned, "plain + aligned")}) {
    const Quantiles a = Figures(one, classes).alloc,
                    m = Figures(dpdk, classes).alloc;
    Target(absl::StrCat("arena alloc p50 ≤ rte_malloc's (", label, ")"),
           a.p50 / m.p50, a.p50, m.p50, true, 1);
    Target(absl::StrCat("arena alloc p99 ≤ 1/10 of rte_malloc's (", label, ")"),
           a.p99 / m.p99, a.p99, m.p99, true, 0.1);
  }
  const Quantiles a = Figures(one, kAllClasses).alloc_ok,
                  m = Figures(dpdk, kAllClasses).alloc_ok;
  Target(
      "arena alloc p50 ≤ rte_malloc's over the allocations that "
      "succeeded (all requests; not a target)",
      a.p50 / m.p50, a.p50, m.p50, true, 1);
}

}  // namespace

void PrintHeader(const ArenaSetup& s, const Plan& plan) {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  sched_getaffinity(0, sizeof(cpus), &cpus);
  std::printf(
      "arena_benchmark: commit %s\ncores: %d (nproc), %u "
      "(std::thread::hardware_concurrency)\n"
      "physpoold: sim, one segment of %" PRIu64
      " bytes, store on, unix socket; arena: lease %s, one run "
      "[%#" PRIx64 ", %#" PRIx64 "), page %" PRIu64
      ", %s, no growth\n"
      "workload: seed %" PRIu64 ", %" PRIu64
      " steps per run split evenly among its threads (thread t: seed + t, "
      "1/threads of the arena as its capacity, target %.0f %% of it); sizes "
      "4 KiB-8 MiB log-uniform (whole pages), 1/3 aligned 8 KiB-2 MiB, 1/10 "
      "boundary 2-8x the size's power of two, the rest plain; max_segments "
      "1\n",
      Commit().c_str(), CPU_COUNT(&cpus), std::thread::hardware_concurrency(),
      kSegmentBytes, s.lease_id.c_str(), s.layout.lo, s.layout.hi,
      s.arena->page_size(), s.best_fit ? "best fit" : "next fit", plan.seed,
      plan.steps, 100 * kTarget);
}

void PrintRuns(const std::vector<RunSummary>& runs) {
  std::printf(
      "\nEach call timed alone. failed: allocations of the steps that found "
      "no room; allocs+frees/s: the steps' successful calls per second of "
      "wall time (checks and touches included); in calls: the share of the "
      "threads' wall time spent inside the timed calls; mean occupancy: live "
      "requested bytes / capacity after each step; in use at end: what the "
      "allocator counts in use after the last step, of its capacity (arena: "
      "used_bytes(); rte_malloc: heap_allocsz_bytes, headers included).\n");
  const std::string head = TableHead(
      {"allocator", "threads", "steps", "alloc p50", "alloc p99", "alloc p99.9",
       "free p50", "free p99", "free p99.9", "failed", "allocs+frees/s",
       "in calls", "mean occupancy", "in use at end"});
  std::printf("\n%s", head.c_str());
  for (const RunSummary& r : runs) {
    const Fig f = Figures(r, kAllClasses);
    const double in_calls = r.busy_s / (r.threads * r.wall_s);
    const std::string cells = UsCells({f.alloc.p50, f.alloc.p99, f.alloc.p999,
                                       f.free.p50, f.free.p99, f.free.p999});
    std::printf("| %s | %d | %" PRIu64
                " | %s | %.2f %% | %.0f | %.0f %% | %.1f %% | %s |\n",
                r.name.c_str(), r.threads, r.steps, cells.c_str(),
                100.0 * r.failures / r.steps, r.OpsPerSecond(), 100 * in_calls,
                100 * r.occupancy_mean,
                r.used_end < 0 ? "-" : Pct(r.used_end).c_str());
  }
}

void PrintRpc(const RpcFigures& rpc) {
  std::printf(
      "\nphyspoold's RPC pair over its unix socket (raw gRPC stubs, one "
      "after the other):\n\n%s",
      TableHead({"RPC", "n", "p50", "p99", "p99.9"}).c_str());
  const std::pair<const char*, const std::vector<double>*> rows[] = {
      {"Allocate", &rpc.allocate_ns},
      {"Release", &rpc.release_ns},
      {"Allocate + Release", &rpc.pair_ns}};
  for (const auto& [name, ns] : rows) {
    const Quantiles q = QuantilesOf(*ns);
    std::printf("| %s | %zu | %s |\n", name, ns->size(),
                UsCells({q.p50, q.p99, q.p999}).c_str());
  }
}

void PrintTargets(const std::vector<RunSummary>& runs, const RpcFigures& rpc,
                  const RunSummary* dpdk) {
  const RunSummary* one = WithThreads(runs, 1);
  const RunSummary* eight = WithThreads(runs, 8);
  std::printf(
      "\nTargets (arena: its 1-thread run):\n\n| target | measured | "
      "|\n|---|---|---|\n");
  if (one != nullptr && dpdk != nullptr) {
    PrintDpdkTargets(*one, *dpdk);
  } else {
    std::printf(
        "| arena alloc p50 ≤ rte_malloc's; p99 ≤ 1/10 of it | n/a "
        "(DPDK not built in) | |\n");
  }
  const double pair50 = QuantilesOf(rpc.pair_ns).p50;
  if (one != nullptr && !rpc.pair_ns.empty()) {
    const Fig a = Figures(*one, kAllClasses);
    const double both = a.alloc.p50 + a.free.p50;
    Target("RPC pair p50 ≥ 100× arena alloc p50", pair50 / a.alloc.p50, pair50,
           a.alloc.p50, false, 100);
    Target("RPC pair p50 ≥ 100× arena alloc p50 + free p50 (not a target)",
           pair50 / both, pair50, both, false, 100);
  }
  if (one != nullptr && eight != nullptr) {
    const double r = eight->OpsPerSecond() / one->OpsPerSecond();
    std::printf(
        "| 8 threads' allocs+frees/s ≥ 1 thread's | %.3g× (%.0f/s vs "
        "%.0f/s) | %s |\n",
        r, eight->OpsPerSecond(), one->OpsPerSecond(),
        r >= 1 ? "met" : "**NOT met**");
  }
}

int Verdict(const std::vector<RunSummary>& runs, const RpcFigures& rpc) {
  int bad = 0;
  for (const RunSummary& r : runs) {
    if (r.violations != 0) {
      std::fprintf(
          stderr, "%s, %d threads: %" PRIu64 " bad answers, first: %s\n",
          r.name.c_str(), r.threads, r.violations, r.first_violation.c_str());
      bad = 1;
    }
    if (!r.error.empty()) {
      std::fprintf(stderr, "%s, %d threads: a call failed: %s\n",
                   r.name.c_str(), r.threads, r.error.c_str());
      bad = 1;
    }
  }
  if (rpc.failed != 0) {
    std::fprintf(stderr, "RPC pair: %" PRIu64 " failed, first: %s\n",
                 rpc.failed, rpc.first_error.c_str());
    bad = 1;
  }
  return bad;
}

}  // namespace physpool::bench
