// SPDX-License-Identifier: Apache-2.0
// Issue 26's arena benchmark (make bench-arena): physpool::Arena's Allocate
// and Free with 1, 2 and 8 threads on the churn workload of
// bench/dpdk_compare, beside physpoold's Allocate+Release RPC pair and (in
// arena_benchmark_dpdk) DPDK's rte_malloc_socket/rte_free, in one process
// and one run.
//
// Setup: the real physpoold through the tests' harness (sim source, one
// 1.5 GiB segment, store on, unix socket) and an Arena of one 1 GiB lease
// of it (bench/arena/target.h).
//
// Workload (bench/churn.h; RunChurn's algorithm and streams): per thread, a
// pre-fill to its share of the target, then steps of "free random buffers
// of its own while at or above its share, then allocate one". With T
// threads, thread t has seed + t, capacity 1 GiB / T (so the arena as a
// whole is held at 80 %) and --steps / T of the steps (the steps are split:
// every thread count does the same total work). Thread 0 of every run and
// rte_malloc are asked the same requests. What is timed and checked:
// bench/arena/runner.h; "in calls" in the table says which share of the
// threads' time was spent inside the timed calls.
//
// The RPC pair (bench/arena/rpc_pair.h): on the first --rpc-pairs requests
// of thread 0's step stream (sizes capped to half the pool left beside the
// arena: never reached with 8 MiB requests); the arena's lease is live.
//
// DPDK (bench/arena/dpdk.h): rte_malloc on thread 0's 1-thread plan, as
// bench/dpdk_compare. The EAL arguments come first, then "--" and the
// flags:
//
//   arena_benchmark [EAL args --] [--steps N] [--threads 1,2,8] [--seed S]
//                   [--rpc-pairs N] [--placement bestfit|nextfit] [--quick]
//
// --quick: 2000 steps and 200 RPC pairs (the ctest smoke run). The report:
// bench/arena/report.h. Exit 1 if an answer broke a constraint or a call
// failed other than for room; 2 on bad flags or a failed EAL.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/arena/dpdk.h"
#include "bench/arena/report.h"
#include "bench/arena/rpc_pair.h"
#include "bench/arena/runner.h"
#include "bench/arena/target.h"
#include "tests/server/daemon.h"

namespace physpool::bench {
namespace {

using testing::Daemon;

struct Flags {
  uint64_t steps = 200000;  // in all, split among a run's threads
  uint64_t seed = 24;
  uint64_t rpc_pairs = 2000;
  std::vector<int> threads = {1, 2, 8};
  bool best_fit = true;  // --placement bestfit|nextfit
};

// One flag of argv[*i] (and its value, argv[++*i]); false if it is bad.
bool ParseFlag(int argc, char** argv, int* i, Flags* f) {
  const std::string a = argv[*i];
  if (a == "--quick") {
    f->steps = 2000;
    f->rpc_pairs = 200;
    return true;
  }
  const char* v = *i + 1 < argc ? argv[++*i] : "";
  bool ok = true;
  if (a == "--steps") {
    ok = absl::SimpleAtoi(v, &f->steps) && f->steps > 0;
  } else if (a == "--seed") {
    ok = absl::SimpleAtoi(v, &f->seed);
  } else if (a == "--placement") {
    ok = std::strcmp(v, "bestfit") == 0 || std::strcmp(v, "nextfit") == 0;
    f->best_fit = std::strcmp(v, "bestfit") == 0;
  } else if (a == "--rpc-pairs") {
    ok = absl::SimpleAtoi(v, &f->rpc_pairs);
  } else if (a == "--threads") {
    f->threads.clear();
    for (absl::string_view n : absl::StrSplit(v, ',')) {
      int t = 0;
      ok &= absl::SimpleAtoi(n, &t) && t >= 1 && t <= 256;
      f->threads.push_back(t);
    }
  } else {
    ok = false;
  }
  if (!ok) {
    std::fprintf(stderr,
                 "usage: %s [EAL args --] [--steps N] [--threads 1,2,8] "
                 "[--seed S] [--rpc-pairs N] [--placement bestfit|nextfit] "
                 "[--quick]\n(bad: %s %s)\n",
                 argv[0], a.c_str(), v);
  }
  return ok;
}

// physpoold with one segment of kSegmentBytes (sim source).
absl::StatusOr<std::unique_ptr<Daemon>> StartDaemon() {
  testing::DaemonOptions o;
  o.default_ttl_seconds = 600;  // the harness's max_ttl_seconds
  o.segments = {
      absl::StrCat("{bytes: ", kSegmentBytes, ", freelist: 0, numa: 0}")};
  return Daemon::Start(o);
}

int Main(int argc, char** argv) {
  int first = InitDpdk(argc, argv);
  if (first < 0) return 2;
  if (first < argc && std::strcmp(argv[first], "--") == 0) ++first;
  Flags flags;
  for (int i = first; i < argc; ++i) {
    if (!ParseFlag(argc, argv, &i, &flags)) return 2;
  }
  absl::StatusOr<std::unique_ptr<Daemon>> d = StartDaemon();
  if (!d.ok()) {
    std::fprintf(stderr, "physpoold: %s\n", d.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<ArenaSetup> s = MakeArena(**d, flags.best_fit);
  if (!s.ok()) {
    std::fprintf(stderr, "arena: %s\n", s.status().ToString().c_str());
    return 1;
  }
  const Plan plan{flags.seed, flags.steps, kArenaBytes};
  PrintHeader(*s, plan);
  std::vector<RunSummary> runs;
  for (int t : flags.threads) {
    std::fprintf(stderr, "arena, %d thread(s)...\n", t);
    runs.push_back(RunArena(*s, plan, t));
  }
  std::fprintf(stderr, "RPC pairs...\n");
  const RpcFigures rpc = RunRpcPairs(**d, flags.seed, flags.rpc_pairs,
                                     (kSegmentBytes - kArenaBytes) / 2);
  const std::optional<RunSummary> dpdk = RunDpdk(plan);
  if (dpdk) runs.push_back(*dpdk);
  PrintRuns(runs);
  PrintRpc(rpc);
  PrintTargets(runs, rpc, dpdk ? &*dpdk : nullptr);
  const int bad = Verdict(runs, rpc);
  EndDpdk();
  return bad;
}

}  // namespace
}  // namespace physpool::bench

int main(int argc, char** argv) { return physpool::bench::Main(argc, argv); }
