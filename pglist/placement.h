// SPDX-License-Identifier: Apache-2.0
// Where the contig path puts a single run inside a segment (a pool option).
// Segment order is the same for every placement: freelists in order, the
// pool's strategy order within one, and a request lands in a later segment
// only when no earlier one holds a feasible window.
#ifndef PHYSPOOL_PGLIST_PLACEMENT_H_
#define PHYSPOOL_PGLIST_PLACEMENT_H_

#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace physpool::pglist {

enum class Placement : uint8_t {
  // The seed's: the first feasible start at or after the segment's hint,
  // then, wrapping once, the first from the window's start (runs across the
  // hint included). The default.
  kNextFit,
  // Keeps large free stretches whole: a bounded best fit. The window's
  // maximal free stretches of at least the request's length are visited in
  // address order; those with an admissible start are candidates. The
  // search stops at the kBestFitCandidates-th candidate, at a candidate
  // exactly as long as the request, or, once it has a candidate, after
  // kBestFitStretches stretches; with none by then it goes on to the first
  // (so it is complete). The shortest candidate wins (ties: the lower), at
  // its first admissible start. The hint still moves past each run (the
  // simple path uses it).
  kBestFit,
};

inline constexpr int kBestFitCandidates = 4;
inline constexpr int kBestFitStretches = 16;

// "nextfit" / "bestfit", as config files and traces spell them.
absl::string_view PlacementName(Placement p);
std::optional<Placement> ParsePlacement(absl::string_view name);

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_PLACEMENT_H_
