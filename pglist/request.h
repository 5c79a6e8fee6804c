// SPDX-License-Identifier: Apache-2.0
// An allocation request as a tenant states it (bytes and IOVAs), and the same
// request normalised to pages: the one value that every allocation path and
// every placement check uses.
#ifndef PHYSPOOL_PGLIST_REQUEST_H_
#define PHYSPOOL_PGLIST_REQUEST_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "pglist/units.h"

namespace physpool::pglist {

struct Request {
  uint64_t bytes = 0;         // rounded up to whole pages
  Iova low = 0;               // window [low, high) on the IOVA
  Iova high = kMaxIova;       // kMaxIova means unbounded (up to 2^64)
  uint64_t alignment = 0;     // power of two; below the page size (or 0) means
                              // the page size; applies to each run's IOVA
  uint64_t boundary = 0;      // 0, or a power of two >= the rounded size: no
                              // run crosses a multiple of it
  uint32_t max_segments = 0;  // most runs the caller accepts; 0 = unlimited,
                              // except with an alignment above one page or
                              // a boundary, where 0 (like 1) means one run
  bool preemptible = false;   // the aggressive path may reclaim it later
  bool privileged = false;    // may dip into the pool's reserve
  int32_t numa = -1;          // only segments of this NUMA node; -1 = any
  uint32_t run_cap = 0;       // no answer has more runs than this; 0 = none
                              // (the daemon's max_runs_per_lease)
};

// A request in page units. Addresses are absolute page frame numbers, so
// alignment and boundary hold for the IOVA whatever a segment's base is.
struct Constraints {
  PageCount pages;        // >= 1
  Pfn low;                // first page a run may use
  Pfn high;               // one past the last page a run may use
  uint64_t align = 1;     // in pages, a power of two
  uint64_t boundary = 0;  // in pages: 0, or a power of two >= pages
  uint64_t max_runs = 0;  // 0 = unlimited; never 0 with align > 1 or a
                          // boundary (Normalize makes it 1)
  bool preemptible = false;
  bool privileged = false;
  int32_t numa = -1;     // only segments of this node; -1 = any
  uint64_t run_cap = 0;  // most runs of any answer; 0 = no cap

  // The simple path (any free pages) applies: no alignment beyond a page, no
  // boundary, and as many runs as pages allowed.
  bool Simple() const {
    return align == 1 && boundary == 0 &&
           (max_runs == 0 || max_runs >= pages.value);
  }
  uint64_t AlignUp(uint64_t pfn) const {
    return (pfn + align - 1) & ~(align - 1);
  }
  bool CrossesBoundary(uint64_t start, uint64_t len) const {
    return boundary != 0 &&
           ((start ^ (start + len - 1)) & ~(boundary - 1)) != 0;
  }
  // The first page of the boundary cell after the one holding `pfn`.
  // REQUIRES: boundary != 0.
  uint64_t NextCell(uint64_t pfn) const {
    return (pfn & ~(boundary - 1)) + boundary;
  }
  // A run of `len` pages at `start` honours alignment (only checked when
  // `check_align`), boundary and window.
  bool Admits(uint64_t start, uint64_t len, bool check_align = true) const {
    return (!check_align || (start & (align - 1)) == 0) && start >= low.value &&
           start + len <= high.value && !CrossesBoundary(start, len);
  }
};

// Validates `req` for a pool of `page_size` bytes per page and converts it.
// With an alignment above one page or a boundary, max_segments 0 becomes
// max_runs 1: only an explicit max_segments >= 2 accepts several runs.
// max_segments above a non-zero run_cap is INVALID_ARGUMENT.
// Errors (INVALID_ARGUMENT, naming the field): zero size, a size that
// overflows when rounded to pages, alignment or boundary not a power of two,
// boundary below the rounded size, an empty window or one too small for the
// request once its start is aligned.
// REQUIRES: page_size is a power of two >= 4096 (so every PFN is < 2^52 and
// PFN arithmetic below 2^63 cannot overflow).
absl::StatusOr<Constraints> Normalize(const Request& req, uint64_t page_size);

// `c` in an operator's terms (bytes), for error messages.
std::string Describe(const Constraints& c, uint64_t page_size);

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_REQUEST_H_
