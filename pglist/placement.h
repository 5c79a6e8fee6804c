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
  // Keeps large free stretches whole: among the first kBestFitCandidates
  // free stretches of the window (address order) that admit the request,
  // the shortest (ties: the lower), at its first admissible start. The hint
  // still moves past each run (the simple path uses it).
  kBestFit,
};

// How many admissible free stretches kBestFit compares at most; a stretch
// exactly as long as the request ends the search early.
inline constexpr int kBestFitCandidates = 8;

// "nextfit" / "bestfit", as config files and traces spell them.
absl::string_view PlacementName(Placement p);
std::optional<Placement> ParsePlacement(absl::string_view name);

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_PLACEMENT_H_
