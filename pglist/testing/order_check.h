// Independent checks of where an answer may land, by brute force over the
// pool's free stretches (Pool::Segments, Pool::FreeRunsIn), sharing no
// search code with the pool or the model:
//  - a single run lands in the first segment, in allocation order (freelists
//    in order, strategy order within one), that holds a feasible window;
//  - a constrained request fails for want of space (kNoSpace), or the multi
//    path answers it, only when no eligible segment holds a feasible window
//    (completeness);
//  - the simple path takes pages of a segment only when every earlier
//    eligible segment has no free page left in the window.
// Test support only.
#ifndef PHYSPOOL_PGLIST_TESTING_ORDER_CHECK_H_
#define PHYSPOOL_PGLIST_TESTING_ORDER_CHECK_H_

#include <cstddef>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pglist/outcome.h"
#include "pglist/pool.h"
#include "pglist/request.h"

namespace physpool::pglist::testing {

// Position in pool.Segments() of the first eligible segment with a free run
// that `c` admits as one run, or nullopt.
std::optional<size_t> FirstFeasibleSegment(const Pool& pool,
                                           const Constraints& c);

// Checks the outcome `a` of allocating `c` (Pool::Allocate) against
// `first_before`, FirstFeasibleSegment taken just before the call, and the
// pool's state after it. INTERNAL naming the violation.
absl::Status CheckOrder(const Pool& pool, const Constraints& c,
                        std::optional<size_t> first_before,
                        const absl::StatusOr<Allocation>& a);

}  // namespace physpool::pglist::testing

#endif  // PHYSPOOL_PGLIST_TESTING_ORDER_CHECK_H_
