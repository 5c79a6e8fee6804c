// SPDX-License-Identifier: Apache-2.0
// The arena benchmark's DPDK side: rte_malloc_socket/rte_free (bench/
// dpdk_heap.h's MallocTarget) on thread 0's 1-thread plan (same requests,
// same capacity), in a heap of -m MiB, after writing the whole heap once,
// through the arena's runner (same checks and touches). Two
// implementations: dpdk.cc (arena_benchmark_dpdk: DPDK built in) and
// no_dpdk.cc (arena_benchmark: none).
#ifndef PHYSPOOL_BENCH_ARENA_DPDK_H_
#define PHYSPOOL_BENCH_ARENA_DPDK_H_

#include <optional>

#include "bench/arena/runner.h"

namespace physpool::bench {

// Initialises DPDK's EAL from argv, if built in, keeping this thread's CPU
// affinity (the EAL pins it; the arena's threads and physpoold, forked from
// here, would inherit that). Returns the index in argv after the EAL's
// arguments (1 without DPDK), or -1 if the EAL failed (said on stderr).
int InitDpdk(int argc, char** argv);

// rte_malloc's run on `plan` (one thread), after a line on DPDK's heap;
// without DPDK, a line saying so and nullopt.
std::optional<RunSummary> RunDpdk(const Plan& plan);

// Releases what InitDpdk set up.
void EndDpdk();

}  // namespace physpool::bench

#endif  // PHYSPOOL_BENCH_ARENA_DPDK_H_
