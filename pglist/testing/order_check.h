// SPDX-License-Identifier: Apache-2.0
// Independent checks of where an answer may land, by brute force over the
// pool's free stretches (Pool::Segments, Pool::FreeRunsIn), sharing no
// search code with the pool or the model:
//  - freelist order: if an answer's highest freelist is k, no answer with
//    at most max_segments runs (each honouring window, alignment and
//    boundary) existed in the freelists below k; a multi answer takes as
//    few pages of freelist k as any such answer could;
//  - a single run lands in the first segment, in allocation order (freelists
//    in order, strategy order within one), that holds a feasible window; a
//    multi answer reaches freelist k only when no freelist up to k holds one;
//  - a request fails for want of space (kNoSpace) only when no answer
//    existed at all, and (with no reserve, or privileged) as never fitting
//    (kNeverFits) only when none would exist with every page free;
//  - the simple path takes pages of a segment only when every earlier
//    eligible segment has no free page left in the window.
// Test support only.
#ifndef PHYSPOOL_PGLIST_TESTING_ORDER_CHECK_H_
#define PHYSPOOL_PGLIST_TESTING_ORDER_CHECK_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pglist/outcome.h"
#include "pglist/pool.h"
#include "pglist/request.h"

namespace physpool::pglist::testing {

// What the order check needs of the pool before an Allocate call.
struct OrderSnapshot {
  // Position in pool.Segments() of the first eligible segment with a free
  // run that the request admits as one run.
  std::optional<size_t> first_feasible;
  // Per freelist, the *pieces* of its eligible segments' free pages: the
  // longest admissible runs, one per piece (see PiecesOf in the .cc). An
  // answer of at most m runs exists in a set of freelists iff the m largest
  // pieces of those freelists hold the request.
  std::map<uint32_t, std::vector<uint64_t>> pieces;
};

// Position in pool.Segments() of the first eligible segment with a free run
// that `c` admits as one run, or nullopt.
std::optional<size_t> FirstFeasibleSegment(const Pool& pool,
                                           const Constraints& c);

// The snapshot for `c`, to be taken just before Pool::Allocate.
OrderSnapshot TakeOrderSnapshot(const Pool& pool, const Constraints& c);

// Checks the outcome `a` of allocating `c` (Pool::Allocate) against the
// snapshot taken just before the call and the pool's state after it.
// INTERNAL naming the violation.
absl::Status CheckOrder(const Pool& pool, const Constraints& c,
                        const OrderSnapshot& before,
                        const absl::StatusOr<Allocation>& a);

}  // namespace physpool::pglist::testing

#endif  // PHYSPOOL_PGLIST_TESTING_ORDER_CHECK_H_
