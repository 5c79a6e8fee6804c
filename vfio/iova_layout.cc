// SPDX-License-Identifier: Apache-2.0
#include "vfio/iova_layout.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace physpool::vfio {
namespace {

// Rounds v up to a multiple of `align` (a power of two); nullopt on
// overflow.
std::optional<uint64_t> RoundUp(uint64_t v, uint64_t align) {
  const uint64_t r = (v + align - 1) & ~(align - 1);
  if (r < v) return std::nullopt;
  return r;
}

}  // namespace

std::optional<uint64_t> PlaceSegment(const std::vector<IovaRange>& ranges,
                                     const std::map<uint64_t, uint64_t>& used,
                                     uint64_t lo, uint64_t hi, uint64_t bytes,
                                     uint64_t page_size) {
  for (const IovaRange& r : ranges) {
    // [first, end) of this range inside the area; end may be 2^64 - page.
    const uint64_t last = std::min(r.last, hi - 1);
    std::optional<uint64_t> at = RoundUp(std::max(lo, r.first), page_size);
    while (at && *at <= last && last - *at >= bytes - 1) {
      // The first used segment that ends after `at`.
      auto it = used.upper_bound(*at);
      if (it != used.begin()) {
        auto prev = std::prev(it);
        if (prev->first + prev->second > *at) it = prev;
      }
      if (it == used.end() || it->first >= *at + bytes) return *at;
      at = RoundUp(it->first + it->second, page_size);
    }
  }
  return std::nullopt;
}

absl::StatusOr<Area> AreaOf(const LayoutConfig& c, uint32_t freelist) {
  const uint64_t base = c.iova_base ? c.iova_base : c.page_size;
  if (freelist == kLowFreelist) {
    if (c.dma_limits.empty()) {
      return absl::InvalidArgumentError(
          "low memory (freelist 1) needs a device with a dma_limit");
    }
    return Area{base,
                *std::min_element(c.dma_limits.begin(), c.dma_limits.end())};
  }
  if (freelist != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the vfio source has freelists 0 and ", kLowFreelist,
                     ", not ", freelist));
  }
  uint64_t lo = base;
  for (uint64_t l : c.dma_limits) lo = std::max(lo, l);
  return Area{lo, ~uint64_t{0}};
}

absl::StatusOr<std::vector<PlannedSegment>> PlanLayout(
    const LayoutConfig& c, const std::vector<IovaRange>& ranges) {
  std::vector<PlannedSegment> out;
  std::map<uint64_t, uint64_t> used;
  for (size_t i = 0; i < c.pool.size(); ++i) {
    const PoolShare& share = c.pool[i];
    const uint64_t low =
        share.low_bytes.value_or(c.dma_limits.empty() ? 0 : share.bytes);
    if (share.bytes == 0 || share.bytes % c.page_size || low % c.page_size ||
        low > share.bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("pool[", i, "]: bytes ", share.bytes, " and low_bytes ",
                       low, " must be multiples of the page size ", c.page_size,
                       ", bytes > 0 and low_bytes <= bytes"));
    }
    for (uint32_t freelist : {kLowFreelist, uint32_t{0}}) {
      uint64_t left = freelist == kLowFreelist ? low : share.bytes - low;
      if (left == 0) continue;
      auto area = AreaOf(c, freelist);
      if (!area.ok()) return area.status();
      uint64_t size = std::min(left, c.max_segment_bytes);
      while (left > 0) {
        size = std::min(size, left);
        auto at =
            PlaceSegment(ranges, used, area->lo, area->hi, size, c.page_size);
        if (!at) {
          if (size > c.page_size) {  // try smaller pieces
            size = std::max(c.page_size, (size / 2) & ~(c.page_size - 1));
            continue;
          }
          return absl::ResourceExhaustedError(absl::StrCat(
              "pool[", i, "] (numa ", share.numa, "): ", left, " of ",
              freelist == kLowFreelist ? low : share.bytes - low,
              " bytes do not fit in the IOVA area [", Hex(area->lo), ", ",
              Hex(area->hi), ") of the IOMMU's ranges",
              freelist == kLowFreelist ? " below the lowest device dma_limit"
                                       : ""));
        }
        used[*at] = size;
        out.push_back({*at, size, freelist, share.numa});
        left -= size;
      }
    }
  }
  return out;
}

std::vector<IovaRange> IntersectRanges(const std::vector<IovaRange>& a,
                                       const std::vector<IovaRange>& b) {
  std::vector<IovaRange> out;
  for (const IovaRange& x : a) {
    for (const IovaRange& y : b) {
      const uint64_t first = std::max(x.first, y.first);
      const uint64_t last = std::min(x.last, y.last);
      if (first <= last) out.push_back({first, last});
    }
  }
  std::sort(out.begin(), out.end(), [](const IovaRange& l, const IovaRange& r) {
    return l.first < r.first;
  });
  return out;
}

}  // namespace physpool::vfio
