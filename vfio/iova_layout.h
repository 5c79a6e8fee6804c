// SPDX-License-Identifier: Apache-2.0
// Where physsegs go in the IOVA space: inside the IOMMU's ranges (never
// across the MSI hole or past the top), memory meant for limited devices
// below the lowest device DMA limit (freelist kLowFreelist, used last), the
// rest from the highest limit up (freelist 0). Pure functions: the same
// config and ranges give the same layout, which is how a restarted daemon
// finds its segments at the same IOVAs. See docs/vfio.md.
#ifndef PHYSPOOL_VFIO_IOVA_LAYOUT_H_
#define PHYSPOOL_VFIO_IOVA_LAYOUT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vfio/kernel.h"

namespace physpool::vfio {

inline constexpr uint32_t kLowFreelist = 1;

struct PoolShare {
  int32_t numa = 0;
  uint64_t bytes = 0;
  // Of `bytes`, how much goes below the lowest device DMA limit. Unset:
  // all of it when a device has a limit, else none.
  std::optional<uint64_t> low_bytes;
};

struct LayoutConfig {
  uint64_t page_size = 2 << 20;
  uint64_t max_segment_bytes = uint64_t{1} << 30;
  // Lowest IOVA used; 0 = one page (IOVA 0 is never handed out).
  uint64_t iova_base = 0;
  std::vector<uint64_t> dma_limits;  // one per device with a limit
  std::vector<PoolShare> pool;
};

struct PlannedSegment {
  uint64_t iova = 0;
  uint64_t bytes = 0;
  uint32_t freelist = 0;
  int32_t numa = 0;
};

// The lowest page-aligned IOVA in [lo, hi) where `bytes` fit inside one
// range without touching `used` (iova -> bytes); nullopt if none.
std::optional<uint64_t> PlaceSegment(const std::vector<IovaRange>& ranges,
                                     const std::map<uint64_t, uint64_t>& used,
                                     uint64_t lo, uint64_t hi, uint64_t bytes,
                                     uint64_t page_size);

// The IOVAs both `a` and `b` translate (inclusive ranges, each list
// sorted and disjoint), sorted.
std::vector<IovaRange> IntersectRanges(const std::vector<IovaRange>& a,
                                       const std::vector<IovaRange>& b);

// The area [lo, hi) for segments of `freelist`.
struct Area {
  uint64_t lo = 0, hi = 0;
};
absl::StatusOr<Area> AreaOf(const LayoutConfig& c, uint32_t freelist);

// Lays the whole pool out. INVALID_ARGUMENT for sizes that are not page
// multiples or low memory without a device limit; RESOURCE_EXHAUSTED
// naming the share, the area and the bytes that did not fit.
absl::StatusOr<std::vector<PlannedSegment>> PlanLayout(
    const LayoutConfig& c, const std::vector<IovaRange>& ranges);

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_IOVA_LAYOUT_H_
