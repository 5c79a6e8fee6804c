// SPDX-License-Identifier: Apache-2.0
// Shorthands for the core's unit tests: segments and requests in pages of
// 4 KiB. Test support only.
#ifndef PHYSPOOL_PGLIST_TESTING_REQUESTS_H_
#define PHYSPOOL_PGLIST_TESTING_REQUESTS_H_

#include <cstdint>

#include "pglist/physseg.h"
#include "pglist/request.h"
#include "pglist/units.h"

namespace physpool::pglist::testing {

inline constexpr uint64_t kTestPage = 4096;

// A segment of `pages` pages at page frame `pfn`.
inline SegmentSpec Seg(uint64_t pfn, uint64_t pages, uint32_t freelist = 0) {
  SegmentSpec s;
  s.iova = pfn * kTestPage;
  s.pages = PageCount(pages);
  s.freelist = freelist;
  return s;
}

// `pages` pages, any number of runs.
inline Request Req(uint64_t pages) {
  Request r;
  r.bytes = pages * kTestPage;
  return r;
}

// `pages` pages in one run, aligned and bounded in pages.
inline Request Contig(uint64_t pages, uint64_t align_pages = 1,
                      uint64_t boundary_pages = 0) {
  Request r = Req(pages);
  r.alignment = align_pages * kTestPage;
  r.boundary = boundary_pages * kTestPage;
  r.max_segments = 1;
  return r;
}

inline PageRun R(uint64_t start, uint64_t pages) {
  return {Pfn(start), PageCount(pages)};
}

}  // namespace physpool::pglist::testing

#endif  // PHYSPOOL_PGLIST_TESTING_REQUESTS_H_
