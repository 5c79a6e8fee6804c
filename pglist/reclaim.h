// The aggressive path's search: in one segment, the admissible window of
// c.pages pages made only of free pages and pages of preemptible
// allocations whose reclaim costs least — fewest preemptible pages inside
// it, then fewest allocations touched, then lowest address.
#ifndef PHYSPOOL_PGLIST_RECLAIM_H_
#define PHYSPOOL_PGLIST_RECLAIM_H_

#include <cstdint>
#include <map>
#include <optional>

#include "pglist/outcome.h"
#include "pglist/physseg.h"
#include "pglist/request.h"

namespace physpool::pglist {

// The runs of live preemptible allocations, keyed by first page.
struct PreemptRun {
  PageCount pages;
  AllocationId id;
};
using PreemptMap = std::map<Pfn, PreemptRun>;

struct ReclaimWindow {
  Pfn start;
  uint64_t cost = 0;     // preemptible pages inside the window
  uint64_t victims = 0;  // distinct allocations they belong to

  bool BetterThan(const ReclaimWindow& o) const {
    return cost != o.cost ? cost < o.cost : victims < o.victims;
  }
};

// The least-cost window of `seg` for `c`, or nullopt if every admissible
// window holds a page that is used and not preemptible. Exact: the cost is
// piecewise linear in the start, so only the admissible starts next to a
// run edge (or an edge minus c.pages) can be best, and only those are
// evaluated. O(R log R) for R preemptible runs in the segment, plus a walk
// of the segment's used stretches.
std::optional<ReclaimWindow> FindReclaimWindow(const PhysSeg& seg,
                                               const PreemptMap& preempt,
                                               const Constraints& c);

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_RECLAIM_H_
