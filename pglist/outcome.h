// SPDX-License-Identifier: Apache-2.0
// What an allocation produces: the path that served it, the runs, and when a
// request fails, a machine-readable reason carried in the Status payload so
// that the server can decide whether waiting could help.
#ifndef PHYSPOOL_PGLIST_OUTCOME_H_
#define PHYSPOOL_PGLIST_OUTCOME_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "pglist/units.h"

namespace physpool::pglist {

using AllocationId = uint64_t;

// The allocation paths. kMulti is physpool's own: several runs, each
// honouring the constraints, when one run cannot be had and the request
// accepts more (see docs/allocator.md).
enum class Path : uint8_t { kSimple, kContig, kMulti, kAggressive, kClaim };
inline constexpr int kNumPaths = 5;
absl::string_view PathName(Path p);

enum class FailReason : uint8_t {
  kNone,
  kInvalid,    // the request is malformed (INVALID_ARGUMENT)
  kReserve,    // it would dip into the reserve (RESOURCE_EXHAUSTED)
  kNoSpace,    // no placement now; frees could make one (RESOURCE_EXHAUSTED)
  kNeverFits,  // no placement even in an empty pool of these segments
  kNoReclaim,  // aggressive: no window can be formed by reclaiming
};
inline constexpr int kNumFailReasons = 6;
absl::string_view FailReasonName(FailReason r);

// A Status of `code` with `message` and `reason` as its payload.
absl::Status FailWith(absl::StatusCode code, FailReason reason,
                      absl::string_view message);
// The reason attached by FailWith; kNone for OK or foreign statuses.
FailReason FailReasonOf(const absl::Status& s);

struct Allocation {
  AllocationId id = 0;
  Path path = Path::kSimple;
  std::vector<PageRun> runs;  // ascending, no run crosses a segment
  bool preemptible = false;
  PageCount pages() const {
    PageCount n;
    for (const auto& r : runs) n += r.pages;
    return n;
  }
};

// What the aggressive path needs reclaimed to form `window`.
struct ReclaimPlan {
  PageRun window;
  std::vector<AllocationId> victims;  // ascending; all preemptible
  PageCount reclaim_pages;  // the cost: all pages of the victims, which
                            // revoking frees (inside the window or not)
};

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_OUTCOME_H_
