// SPDX-License-Identifier: Apache-2.0
// Counters of the allocation paths, cheap to copy on every metrics scrape.
#ifndef PHYSPOOL_PGLIST_STATS_H_
#define PHYSPOOL_PGLIST_STATS_H_

#include <array>
#include <cstdint>

#include "pglist/outcome.h"

namespace physpool::pglist {

struct PathCounters {
  uint64_t attempts = 0;
  uint64_t successes = 0;
  std::array<uint64_t, kNumFailReasons> failures{};  // by FailReason
};

struct PoolStats {
  std::array<PathCounters, kNumPaths> paths{};  // by Path
  // fallbacks[from][to]: a request that `from` could not serve went on to
  // `to` (simple/contig -> aggressive, contig -> multi, multi -> aggressive).
  std::array<std::array<uint64_t, kNumPaths>, kNumPaths> fallbacks{};

  PathCounters& at(Path p) { return paths[static_cast<int>(p)]; }
  const PathCounters& at(Path p) const { return paths[static_cast<int>(p)]; }
  uint64_t fallback(Path from, Path to) const {
    return fallbacks[static_cast<int>(from)][static_cast<int>(to)];
  }
};

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_STATS_H_
