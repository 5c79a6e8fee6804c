// SPDX-License-Identifier: Apache-2.0
// `physpoolctl simulate`: replays a JSON Lines trace through the allocation
// core, offline, and prints one JSON result per alloc/free line (DESIGN.md).
#ifndef PHYSPOOL_CLI_SIMULATE_H_
#define PHYSPOOL_CLI_SIMULATE_H_

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "cli/trace.h"
#include "pglist/pool.h"

namespace physpool::cli {

class Simulator {
 public:
  // Applies one trace op, appending its result line (alloc and free only)
  // to *out. A non-OK status is a trace error that stops the replay: a pool
  // line after other lines, a bad pool or segment, an alloc whose id is
  // still live, a drain/undrain/remove of an unknown segment.
  absl::Status Apply(const TraceOp& op, std::string* out);

  // The pool, once the first line has created it.
  const pglist::Pool* pool() const { return pool_ ? &*pool_ : nullptr; }
  // A human summary of the replay (counts per path and status, free pages).
  std::string Summary() const;

 private:
  absl::Status EnsurePool();
  absl::Status Alloc(const AllocLine& l, std::string* out);
  absl::Status Free(const FreeLine& l, std::string* out);
  absl::Status Control(const SegmentControlLine& l);

  std::optional<pglist::Pool> pool_;
  absl::flat_hash_map<std::string, pglist::AllocationId> live_;
  absl::flat_hash_map<pglist::AllocationId, std::string> names_;
  absl::flat_hash_set<std::string> reclaimed_;
  absl::flat_hash_map<std::string, uint64_t> results_;  // "alloc OK", ...
};

// Reads `in` to the end, line by line (blank lines are skipped), writing
// results to `out`. On a malformed line returns INVALID_ARGUMENT
// "line N: reason" after writing the results of the lines before it.
absl::Status Simulate(std::FILE* in, std::FILE* out, Simulator* sim);

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_SIMULATE_H_
