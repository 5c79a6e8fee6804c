// SPDX-License-Identifier: Apache-2.0
// The occupancy map (Admin.GetOccupancy): each segment as runs of one state
// each — free, used, preemptible, being zeroed — in address order, paged.
//
// State: none (a function). Thread safety: reads the pool, the segments
// and `scrubbing` under the Turn that proves the pool's lock. I/O: none.
// REQUIRES: `scrubbing` is the Recycler's set (read in the same turn).
#ifndef PHYSPOOL_SERVER_MEMORY_OCCUPANCY_H_
#define PHYSPOOL_SERVER_MEMORY_OCCUPANCY_H_

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "pglist/pool.h"
#include "server/core/turn.h"
#include "server/memory/segments.h"

namespace physpool::server {

enum class OccupancyState {
  kFree = 1,
  kUsed = 2,
  kPreemptible = 3,
  kScrubbing = 4
};
struct OccupancyRun {
  OccupancyState state;
  uint64_t iova = 0;
  uint64_t bytes = 0;
};
struct OccupancyPage {
  std::vector<std::pair<SegmentView, std::vector<OccupancyRun>>> segments;
  // Where the next page starts: (segment id, IOVA); nullopt at the end.
  std::optional<std::pair<uint32_t, uint64_t>> next;
};

// Runs of one state each, in address order, per segment (all if nullopt),
// from (segment, IOVA) `from`, at most `max_runs`. NOT_FOUND for an unknown
// segment, INVALID_ARGUMENT for a `from` that names none.
absl::StatusOr<OccupancyPage> Occupancy(
    Turn& t, const pglist::Pool& pool, const Segments& segments,
    const absl::flat_hash_set<pglist::AllocationId>& scrubbing,
    std::optional<uint32_t> segment_id,
    std::optional<std::pair<uint32_t, uint64_t>> from, size_t max_runs);

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_MEMORY_OCCUPANCY_H_
