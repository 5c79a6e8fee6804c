#include "pglist/testing/order_check.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"

namespace physpool::pglist::testing {
namespace {

bool Eligible(const SegmentInfo& s, const Constraints& c) {
  return !s.draining && (c.numa < 0 || c.numa == s.spec.numa);
}

// The window's part of the segment's available range; empty if none.
PageRun Clip(const SegmentInfo& s, const Constraints& c) {
  const Pfn lo = std::max(s.avail.start, c.low);
  const Pfn hi = std::min(s.avail.end(), c.high);
  return lo < hi ? PageRun{lo, hi - lo} : PageRun{lo, PageCount(0)};
}

std::optional<size_t> SegmentOf(const std::vector<SegmentInfo>& segs,
                                const PageRun& r) {
  for (size_t i = 0; i < segs.size(); ++i) {
    if (segs[i].avail.start <= r.start && r.end() <= segs[i].avail.end()) {
      return i;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<size_t> FirstFeasibleSegment(const Pool& pool,
                                           const Constraints& c) {
  const std::vector<SegmentInfo> segs = pool.Segments();
  const uint64_t n = c.pages.value;
  for (size_t i = 0; i < segs.size(); ++i) {
    if (!Eligible(segs[i], c)) continue;
    const PageRun w = Clip(segs[i], c);
    if (w.pages.value < n) continue;
    for (const PageRun& f : pool.FreeRunsIn(w)) {
      // Every start of the stretch, one by one.
      for (uint64_t s = f.start.value; s + n <= f.end().value; ++s) {
        if (c.Admits(s, n)) return i;
      }
    }
  }
  return std::nullopt;
}

absl::Status CheckOrder(const Pool& pool, const Constraints& c,
                        std::optional<size_t> first_before,
                        const absl::StatusOr<Allocation>& a) {
  const std::vector<SegmentInfo> segs = pool.Segments();
  auto where = [](std::optional<size_t> i) {
    return i ? absl::StrCat("segment #", *i) : std::string("none");
  };
  if (!a.ok()) {
    const FailReason r = FailReasonOf(a.status());
    // (kNeverFits may also mean the reserve: not checked.)
    if (!c.Simple() && first_before && r == FailReason::kNoSpace) {
      return absl::InternalError(absl::StrCat("failed (", FailReasonName(r),
                                              ") though ", where(first_before),
                                              " holds a feasible window"));
    }
    return absl::OkStatus();
  }
  if (a->path == Path::kContig) {
    const std::optional<size_t> got = SegmentOf(segs, a->runs.front());
    if (got != first_before) {
      return absl::InternalError(absl::StrCat(
          "one run in ", where(got), " but the first segment in order with ",
          "a feasible window was ", where(first_before)));
    }
  } else if (a->path == Path::kMulti && !c.Simple() && first_before) {
    // Several runs in freelists up to k only when no freelist up to k
    // holds one window.
    uint32_t k = 0;
    for (const PageRun& r : a->runs) {
      if (auto i = SegmentOf(segs, r)) k = std::max(k, segs[*i].spec.freelist);
    }
    if (segs[*first_before].spec.freelist <= k) {
      return absl::InternalError(absl::StrCat("several runs up to freelist ", k,
                                              " though ", where(first_before),
                                              " holds one window"));
    }
  } else if (a->path == Path::kSimple) {
    for (const PageRun& r : a->runs) {
      const std::optional<size_t> k = SegmentOf(segs, r);
      for (size_t i = 0; k && i < *k; ++i) {
        if (!Eligible(segs[i], c)) continue;
        const PageRun w = Clip(segs[i], c);
        if (w.pages.value != 0 && !pool.FreeRunsIn(w).empty()) {
          return absl::InternalError(
              absl::StrCat("simple: took pages of segment #", *k,
                           " while segment #", i, " has free pages"));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace physpool::pglist::testing
