// SPDX-License-Identifier: Apache-2.0
// The aggressive path's search: in one segment, the admissible window of
// c.pages pages made only of free pages and pages of preemptible
// allocations whose reclaim costs least. Reclaiming revokes whole
// allocations, so a window costs the total size of the allocations it
// touches (all their pages, wherever they are), then their number, then
// its segment's freelist (lower first), then its address (lower first).
#ifndef PHYSPOOL_PGLIST_RECLAIM_H_
#define PHYSPOOL_PGLIST_RECLAIM_H_

#include <cstdint>
#include <map>
#include <optional>
#include <tuple>

#include "pglist/outcome.h"
#include "pglist/physseg.h"
#include "pglist/request.h"

namespace physpool::pglist {

// The runs of live preemptible allocations, keyed by first page.
struct PreemptRun {
  PageCount pages;        // of this run
  AllocationId id;        // the allocation it belongs to
  PageCount alloc_pages;  // of the whole allocation: what revoking it frees
};
using PreemptMap = std::map<Pfn, PreemptRun>;

struct ReclaimWindow {
  Pfn start;
  uint64_t cost = 0;      // total pages of the allocations it revokes
  uint64_t victims = 0;   // their number
  uint32_t freelist = 0;  // of its segment

  // Cheaper, then fewer victims, then the lower freelist (its scarce
  // memory last, as everywhere else: DESIGN.md says address order here;
  // docs/allocator.md, "aggressive"), then lower address.
  bool BetterThan(const ReclaimWindow& o) const {
    return std::tie(cost, victims, freelist, start.value) <
           std::tie(o.cost, o.victims, o.freelist, o.start.value);
  }
};

// The best window of `seg` for `c` (see ReclaimWindow::BetterThan), or
// nullopt if every admissible window holds a page that is used and not
// preemptible. Exact: the set of allocations a window touches changes only
// where its start passes a run's end or its end passes a run's start, so
// the first admissible start after each such edge is the only candidate of
// its interval. O(R log R) for R preemptible runs in the segment, plus a
// walk of the segment's used stretches.
std::optional<ReclaimWindow> FindReclaimWindow(const PhysSeg& seg,
                                               const PreemptMap& preempt,
                                               const Constraints& c);

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_RECLAIM_H_
