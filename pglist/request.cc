// SPDX-License-Identifier: Apache-2.0
#include "pglist/request.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace physpool::pglist {

absl::StatusOr<Constraints> Normalize(const Request& req, uint64_t page_size) {
  if (req.bytes == 0) return absl::InvalidArgumentError("bytes must be > 0");
  const auto rounded = CheckedAlignUp(req.bytes, page_size);
  if (!rounded) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bytes ", req.bytes, " overflows when rounded up to the page size ",
        page_size));
  }
  if (req.alignment != 0 && !IsPowerOfTwo(req.alignment)) {
    return absl::InvalidArgumentError(
        absl::StrCat("alignment ", req.alignment, " is not a power of two"));
  }
  if (req.boundary != 0 && !IsPowerOfTwo(req.boundary)) {
    return absl::InvalidArgumentError(
        absl::StrCat("boundary ", req.boundary, " is not a power of two"));
  }
  if (req.boundary != 0 && req.boundary < *rounded) {
    return absl::InvalidArgumentError(absl::StrCat(
        "boundary ", req.boundary, " is smaller than the request (", *rounded,
        " bytes after rounding to pages)"));
  }
  if (req.low >= req.high) {
    return absl::InvalidArgumentError(
        absl::StrCat("empty window: low ", req.low, " >= high ", req.high));
  }
  Constraints c;
  c.pages = PageCount(*rounded / page_size);
  c.align = req.alignment > page_size ? req.alignment / page_size : 1;
  c.boundary = req.boundary / page_size;
  if (req.run_cap != 0 && req.max_segments > req.run_cap) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_segments ", req.max_segments,
                     " is above the most runs a lease may have (", req.run_cap,
                     ", leases.max_runs_per_lease)"));
  }
  c.max_runs = req.max_segments;
  c.run_cap = req.run_cap;
  // An alignment or a boundary means one run unless the caller explicitly
  // accepts several (max_segments >= 2), as in the seed's dispatch: a
  // runtime that uses the first run's IOVA as its buffer base must never
  // get a second run it did not ask for.
  if ((c.align > 1 || c.boundary != 0) && c.max_runs == 0) c.max_runs = 1;
  c.preemptible = req.preemptible;
  c.privileged = req.privileged;
  c.numa = req.numa < 0 ? -1 : req.numa;
  // Pages are whole: the first page starting at or above low, the last page
  // ending at or below high. kMaxIova stands for 2^64.
  c.low = Pfn(req.low / page_size + (req.low % page_size != 0));
  c.high = Pfn(req.high == kMaxIova ? kMaxIova / page_size + 1
                                    : req.high / page_size);
  const uint64_t first = c.AlignUp(c.low.value);  // < 2^53: no overflow
  if (first >= c.high.value || c.high.value - first < c.pages.value) {
    return absl::InvalidArgumentError(
        absl::StrCat("window [", req.low, ", ", req.high, ") cannot hold ",
                     *rounded, " bytes at alignment ", req.alignment));
  }
  return c;
}

std::string Describe(const Constraints& c, uint64_t page_size) {
  const uint64_t ps = page_size;
  const bool unbounded = c.high.value == kMaxIova / ps + 1;
  return absl::StrCat(
      c.pages.value, " pages (alignment ", c.align * ps, ", boundary ",
      c.boundary == 0 ? "none" : absl::StrCat(c.boundary * ps), ", window [",
      c.low.value * ps, ", ",
      unbounded ? "unbounded" : absl::StrCat(c.high.value * ps), "), ",
      c.max_runs == 0 ? "any number of" : absl::StrCat("at most ", c.max_runs),
      " runs)");
}

}  // namespace physpool::pglist
