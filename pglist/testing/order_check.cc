// SPDX-License-Identifier: Apache-2.0
#include "pglist/testing/order_check.h"

#include <algorithm>
#include <functional>
#include <string>
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

// Appends the pieces of the free stretch `f` (inside the window): page by
// page, from each page where a run may start (c.Admits of one page), the
// longest run that c admits, then on from its end. Every admissible run of
// `f` lies inside one piece: a run from a page that admits no run is not
// admissible, and a piece ends at the stretch's end, the window's end or a
// boundary multiple, which no run from inside it may pass. So at most one
// run per piece is useful, and the whole piece is one.
void PiecesOf(const Constraints& c, const PageRun& f,
              std::vector<uint64_t>* out) {
  const uint64_t end = f.end().value;
  for (uint64_t p = f.start.value; p < end;) {
    if (!c.Admits(p, 1)) {
      ++p;
      continue;
    }
    uint64_t len = 1;
    while (p + len < end && c.Admits(p, len + 1)) ++len;
    out->push_back(len);
    p += len;
  }
}

// The most runs an answer may have; 0 = any number.
uint64_t MostRuns(const Constraints& c) {
  if (c.run_cap != 0 && (c.max_runs == 0 || c.max_runs > c.run_cap))
    return c.run_cap;
  return c.max_runs;
}

// Sorted largest first.
std::vector<uint64_t> Largest(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end(), std::greater<>());
  return v;
}

// Pages of the `m` largest pieces (0 = all).
uint64_t MostPages(const std::vector<uint64_t>& pieces, uint64_t m) {
  const std::vector<uint64_t> v = Largest(pieces);
  uint64_t sum = 0;
  for (size_t i = 0; i < v.size() && (m == 0 || i < m); ++i) sum += v[i];
  return sum;
}

// The pieces of the freelists whose id satisfies `in`.
std::vector<uint64_t> PiecesWhere(const OrderSnapshot& s,
                                  const std::function<bool(uint32_t)>& in) {
  std::vector<uint64_t> out;
  for (const auto& [list, pieces] : s.pieces) {
    if (in(list)) out.insert(out.end(), pieces.begin(), pieces.end());
  }
  return out;
}

// The fewest pages of freelist k that an answer of at most m runs using
// freelists up to k must take, given that the freelists below k cannot
// hold all n pages: n less the most that j lower pieces hold, over every j
// for which the rest fits in m - j pieces of freelist k.
std::optional<uint64_t> FewestPagesOfTheLast(const std::vector<uint64_t>& lower,
                                             const std::vector<uint64_t>& last,
                                             uint64_t n, uint64_t m) {
  const std::vector<uint64_t> l = Largest(lower), k = Largest(last);
  if (m == 0) m = l.size() + k.size();
  std::optional<uint64_t> best;
  for (uint64_t j = 0; j <= std::min<uint64_t>(m, l.size()); ++j) {
    uint64_t lower_pages = 0, last_pages = 0;
    for (uint64_t i = 0; i < j; ++i) lower_pages += l[i];
    for (uint64_t i = 0; i < std::min<uint64_t>(m - j, k.size()); ++i)
      last_pages += k[i];
    if (lower_pages + last_pages >= n && lower_pages < n) {
      if (!best || n - lower_pages < *best) best = n - lower_pages;
    }
  }
  return best;
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

OrderSnapshot TakeOrderSnapshot(const Pool& pool, const Constraints& c) {
  OrderSnapshot s;
  s.first_feasible = FirstFeasibleSegment(pool, c);
  for (const SegmentInfo& seg : pool.Segments()) {
    std::vector<uint64_t>& pieces = s.pieces[seg.spec.freelist];
    if (!Eligible(seg, c)) continue;
    const PageRun w = Clip(seg, c);
    if (w.pages.value == 0) continue;
    for (const PageRun& f : pool.FreeRunsIn(w)) PiecesOf(c, f, &pieces);
  }
  return s;
}

absl::Status CheckOrder(const Pool& pool, const Constraints& c,
                        const OrderSnapshot& before,
                        const absl::StatusOr<Allocation>& a) {
  const std::vector<SegmentInfo> segs = pool.Segments();
  const uint64_t n = c.pages.value, m = MostRuns(c);
  const std::string runs_allowed = m == 0 ? std::string("any number of runs")
                                          : absl::StrCat("<= ", m, " runs");
  auto where = [](std::optional<size_t> i) {
    return i ? absl::StrCat("segment #", *i) : std::string("none");
  };
  if (!a.ok()) {
    const FailReason r = FailReasonOf(a.status());
    if (r == FailReason::kNoSpace) {
      const uint64_t most =
          MostPages(PiecesWhere(before, [](uint32_t) { return true; }), m);
      if (most >= n) {
        return absl::InternalError(absl::StrCat(
            "failed (no_space) though the free pages held an answer in ",
            runs_allowed, " (", most, " pages; first segment with one run: ",
            where(before.first_feasible), ")"));
      }
    }
    // With a reserve, kNeverFits may also mean the reserve: not checked.
    if (r == FailReason::kNeverFits &&
        (pool.options().reserve_pages.value == 0 || c.privileged)) {
      std::vector<uint64_t> empty;
      for (const SegmentInfo& seg : segs) {
        const PageRun w = Clip(seg, c);
        if (Eligible(seg, c) && w.pages.value != 0) PiecesOf(c, w, &empty);
      }
      if (MostPages(empty, m) >= n) {
        return absl::InternalError(absl::StrCat(
            "failed (never_fits) though with every page free an answer in ",
            runs_allowed, " would exist"));
      }
    }
    return absl::OkStatus();
  }
  // Freelist order, every path: nothing below the answer's highest freelist
  // could hold it.
  uint32_t k = 0;
  uint64_t pages_in_k = 0;
  for (const PageRun& r : a->runs) {
    if (auto i = SegmentOf(segs, r)) k = std::max(k, segs[*i].spec.freelist);
  }
  for (const PageRun& r : a->runs) {
    auto i = SegmentOf(segs, r);
    if (i && segs[*i].spec.freelist == k) pages_in_k += r.pages.value;
  }
  const std::vector<uint64_t> lower =
      PiecesWhere(before, [k](uint32_t f) { return f < k; });
  if (const uint64_t most = MostPages(lower, m); most >= n) {
    return absl::InternalError(absl::StrCat("answer reaches freelist ", k,
                                            " though the freelists below held ",
                                            most, " pages in ", runs_allowed));
  }
  if (a->path == Path::kContig) {
    const std::optional<size_t> got = SegmentOf(segs, a->runs.front());
    if (got != before.first_feasible) {
      return absl::InternalError(absl::StrCat(
          "one run in ", where(got), " but the first segment in order with ",
          "a feasible window was ", where(before.first_feasible)));
    }
  } else if (a->path == Path::kMulti && !c.Simple()) {
    // Several runs up to freelist k only when no freelist up to k holds one
    // window, and with the fewest pages of freelist k.
    if (before.first_feasible &&
        segs[*before.first_feasible].spec.freelist <= k) {
      return absl::InternalError(
          absl::StrCat("several runs up to freelist ", k, " though ",
                       where(before.first_feasible), " holds one window"));
    }
    const std::optional<uint64_t> fewest = FewestPagesOfTheLast(
        lower, PiecesWhere(before, [k](uint32_t f) { return f == k; }), n, m);
    if (fewest != pages_in_k) {
      return absl::InternalError(absl::StrCat(
          "several runs take ", pages_in_k, " pages of freelist ", k, " where ",
          fewest ? absl::StrCat(*fewest) : "none", " would do"));
    }
  } else if (a->path == Path::kSimple) {
    for (const PageRun& r : a->runs) {
      const std::optional<size_t> i_of_r = SegmentOf(segs, r);
      for (size_t i = 0; i_of_r && i < *i_of_r; ++i) {
        if (!Eligible(segs[i], c)) continue;
        const PageRun w = Clip(segs[i], c);
        if (w.pages.value != 0 && !pool.FreeRunsIn(w).empty()) {
          return absl::InternalError(
              absl::StrCat("simple: took pages of segment #", *i_of_r,
                           " while segment #", i, " has free pages"));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace physpool::pglist::testing
