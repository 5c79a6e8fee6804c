// SPDX-License-Identifier: Apache-2.0
// The arena under test in the arena benchmark, and its runs. Setup: a
// Client over the unix socket of a running physpoold (tenant alice); an
// Arena of one 1 GiB lease in one run (region max_segments 1; no growth;
// best or next fit). The lease's run and the CPU address of its first byte
// are learnt from the daemon (LeaseRuns) and from one buffer of the whole
// arena, which also writes every page once and msyncs them (no run pays
// for first-touch faults).
//
// A run (RunArena): the runner's threads (bench/arena/runner.h), each on
// its own target over the shared arena. Every request is BufferOptions
// {bytes, alignment, boundary, max_segments 1}; the timed call is the
// arena's plus putting the Buffer in (or freeing it from) a slot vector.
// The target checks each answer: one run of the size in whole pages, inside
// the lease's run, its CPU address the lease mapping's at that offset.
// After the steps the arena's used_bytes() must be what the threads hold,
// and after the drain it must count nothing; else the run's error says so.
#ifndef PHYSPOOL_BENCH_ARENA_TARGET_H_
#define PHYSPOOL_BENCH_ARENA_TARGET_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "bench/arena/runner.h"
#include "physpool/client.h"
#include "tests/server/daemon.h"

namespace physpool::bench {

inline constexpr uint64_t kArenaBytes = uint64_t{1} << 30;
// The daemon's one segment, of which the arena leases kArenaBytes.
inline constexpr uint64_t kSegmentBytes = uint64_t{3} << 29;  // 1.5 GiB

// The arena's one lease: its run [lo, hi) and where lo is mapped here.
struct ArenaLayout {
  uint64_t lo = 0, hi = 0;
  uint8_t* cpu_lo = nullptr;
};

// The arena under test. Members in this order: the arena goes first.
struct ArenaSetup {
  std::unique_ptr<Client> client;
  std::unique_ptr<Arena> arena;
  std::string lease_id;
  ArenaLayout layout;
  bool best_fit = true;
};

// Connects to `d` and creates, checks and warms the arena up.
absl::StatusOr<ArenaSetup> MakeArena(const testing::Daemon& d, bool best_fit);

// One run of the arena on `plan` with `threads` threads.
RunSummary RunArena(ArenaSetup& s, const Plan& plan, int threads);

}  // namespace physpool::bench

#endif  // PHYSPOOL_BENCH_ARENA_TARGET_H_
