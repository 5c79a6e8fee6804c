// SPDX-License-Identifier: Apache-2.0
// The arena benchmark's report, on stdout: a header (commit, cores, the
// daemon and the arena, the workload); a table of the runs (latency
// quantiles of all requests, failures, throughput, occupancy); the RPC
// pair's quantiles; the targets as ratios of this run, met or not.
// The verdict, on stderr: every bad answer and failed call. Figures are
// bench/figures.h's.
#ifndef PHYSPOOL_BENCH_ARENA_REPORT_H_
#define PHYSPOOL_BENCH_ARENA_REPORT_H_

#include <vector>

#include "bench/arena/rpc_pair.h"
#include "bench/arena/runner.h"
#include "bench/arena/target.h"

namespace physpool::bench {

void PrintHeader(const ArenaSetup& s, const Plan& plan);

void PrintRuns(const std::vector<RunSummary>& runs);

void PrintRpc(const RpcFigures& rpc);

// The targets compare the arena's 1-thread run (and its 8-thread run) of
// `runs` with `dpdk` (null: not built in) and the RPC pair.
void PrintTargets(const std::vector<RunSummary>& runs, const RpcFigures& rpc,
                  const RunSummary* dpdk);

// 0 if every answer was right and every call failed only for room; else 1,
// having said what went wrong on stderr.
int Verdict(const std::vector<RunSummary>& runs, const RpcFigures& rpc);

}  // namespace physpool::bench

#endif  // PHYSPOOL_BENCH_ARENA_REPORT_H_
