// SPDX-License-Identifier: Apache-2.0
// The arena benchmark's multi-thread churn runner. A run of T threads, each
// on its own MappedTarget (bench/churn.h), runs RunChurn's algorithm and
// streams (bench/churn.cc) in phases: every thread pre-fills to its share of
// the target; the main thread starts the steps of all at once; after the
// last thread's last step it asks the allocator what it holds; then every
// thread frees what it still holds (the drain).
//
// Timed: each Allocate and Free call alone (steady_clock): the target's call
// alone. Untimed, after each allocation: the answer is checked (CheckAnswer:
// aligned, within its boundary, inside the target's range; the target's own
// Check; no page shared with a live allocation of any thread, in a PageMap
// of the range) and its first and last byte are written with a tag that is
// checked again before it is freed. Throughput: the steps' successful
// allocations and frees per second of wall time, from the start signal to
// the last thread's last step (checks and touches included).
#ifndef PHYSPOOL_BENCH_ARENA_RUNNER_H_
#define PHYSPOOL_BENCH_ARENA_RUNNER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "bench/churn.h"

namespace physpool::bench {

// The occupancy every thread holds its capacity at.
inline constexpr double kTarget = 0.80;

// A run's workload, or one thread's share of it.
struct Plan {
  uint64_t seed = 24;
  uint64_t steps = 0;
  uint64_t capacity = 0;  // bytes; the target is kTarget of it
};

// A whole run: its threads' figures merged.
struct RunSummary : ChurnSamples {
  std::string name;
  int threads = 0;
  uint64_t steps = 0;
  uint64_t failures = 0, violations = 0;
  std::string first_violation, error;
  double wall_s = 0, busy_s = 0;  // busy: summed over the threads' calls
  double occupancy_mean = 0;      // live requested bytes / capacity
  double used_end = -1;   // what the allocator says is in use, at the end
  uint64_t live_end = 0;  // requested bytes live then (all threads)
  double OpsPerSecond() const {
    return (steps - failures + free_ns.size()) / wall_s;
  }
};

// Runs `threads` threads of the workload `base` (thread t: seed + t, the
// capacity and the steps split evenly), each on its own target from
// make(t); the targets share one address range. `used` (optional) is
// asked, between the steps and the drain, which share of the capacity the
// allocator holds.
RunSummary RunThreads(
    const std::string& name, int threads, const Plan& base,
    const std::function<std::unique_ptr<MappedTarget>(int)>& make,
    const std::function<double()>& used);

}  // namespace physpool::bench

#endif  // PHYSPOOL_BENCH_ARENA_RUNNER_H_
