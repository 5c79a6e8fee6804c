// SPDX-License-Identifier: Apache-2.0
// The reference model's placement of constrained requests: one run in a
// segment (next fit or best fit), the multi path's slots and its choice of
// runs. Page by page, as the rest of the model.
#include <algorithm>
#include <optional>
#include <vector>

#include "pglist/testing/reference_pool.h"

namespace physpool::pglist::testing {

// Next fit: every start, one by one, from the hint to the window's end;
// then, wrapping, every start from the window's start up to the first
// pass's first aligned start, whose runs may end anywhere in the window.
// Best fit: the maximal free stretches of the window, page by page; those
// of at least n pages are counted, those that admit the request are
// candidates; stop at kBestFitCandidates candidates, at an exact fit, or
// after kBestFitStretches counted stretches once there is a candidate; the
// shortest candidate (ties: the first), at its first admissible start.
std::optional<uint64_t> ReferencePool::FindSingle(Seg& s,
                                                  const Constraints& c) {
  const uint64_t n = c.pages.value;
  const std::pair<uint64_t, uint64_t> range = Clip(s, c);
  const uint64_t lo = range.first, hi = range.second;
  if (lo >= hi) return std::nullopt;
  std::optional<uint64_t> found;
  if (opts_.placement == Placement::kNextFit) {
    auto admits_free = [&](uint64_t cand) {
      return c.Admits(cand, n) && AllFree(s, cand, n);
    };
    const uint64_t start = std::clamp(s.hint, lo, hi);
    uint64_t first_pass_start = start;
    while (first_pass_start % c.align != 0) ++first_pass_start;
    for (uint64_t cand = start; cand + n <= hi && !found; ++cand) {
      if (admits_free(cand)) found = cand;
    }
    for (uint64_t cand = lo;
         start > lo && cand < first_pass_start && cand + n <= hi && !found;
         ++cand) {
      if (admits_free(cand)) found = cand;
    }
    return found;
  }
  int candidates = 0, stretches = 0;
  uint64_t best_len = 0;
  for (uint64_t p = lo; p < hi && candidates < kBestFitCandidates;) {
    if (s.at(p) != kFree) {
      ++p;
      continue;
    }
    uint64_t q = p;
    while (q < hi && s.at(q) == kFree) ++q;
    std::optional<uint64_t> first;
    for (uint64_t cand = p; cand + n <= q && !first; ++cand) {
      if (c.Admits(cand, n)) first = cand;
    }
    if (first) {
      ++candidates;
      if (!found || q - p < best_len) {
        found = first;
        best_len = q - p;
        if (best_len == n) break;
      }
    }
    if (q - p >= n && ++stretches >= kBestFitStretches && found) break;
    p = q;
  }
  return found;
}

// Free stretches of the window cut at boundary multiples, each from its
// first aligned page, in address order.
std::vector<PageRun> ReferencePool::Slots(Seg& s, const Constraints& c) {
  std::vector<PageRun> slots;
  if (s.draining) return slots;
  const auto [lo, hi] = Clip(s, c);
  uint64_t piece_start = 0;
  bool in_piece = false;
  for (uint64_t p = lo; p <= hi; ++p) {
    const bool cut = p == hi || s.at(p) != kFree ||
                     (c.boundary != 0 && p % c.boundary == 0 && in_piece);
    if (in_piece && cut) {
      for (uint64_t q = piece_start; q < p; ++q) {
        if (q % c.align == 0) {
          slots.push_back({Pfn(q), PageCount(p - q)});
          break;
        }
      }
      in_piece = false;
    }
    if (p < hi && s.at(p) == kFree && !in_piece) {
      in_piece = true;
      piece_start = p;
    }
  }
  return slots;
}

// Several runs from the freelists up to `list`: the slots of the freelists
// below it (`lower`) and of `list` itself (`level`), each in pool order and
// then the largest first (stable). For j from as many lower slots as
// max_runs allows down to none: the j largest lower slots, then the
// largest level slots, each taken up to what is left, at most max_runs in
// all; the first j that gathers the request is the answer (the fewest
// pages of `list`).
std::optional<std::vector<PageRun>> ReferencePool::ChooseMulti(
    const std::vector<Seg*>& order, uint32_t list, const Constraints& c) {
  const uint64_t n = c.pages.value;
  std::vector<PageRun> lower, level;
  for (Seg* s : order) {
    if (s->freelist > list) continue;
    for (const PageRun& r : Slots(*s, c))
      (s->freelist < list ? lower : level).push_back(r);
  }
  auto larger = [](const PageRun& a, const PageRun& b) {
    return a.pages > b.pages;
  };
  std::stable_sort(lower.begin(), lower.end(), larger);
  std::stable_sort(level.begin(), level.end(), larger);
  const uint64_t most =
      c.max_runs != 0 ? c.max_runs : lower.size() + level.size();
  for (uint64_t j = std::min<uint64_t>(most, lower.size());; --j) {
    std::vector<PageRun> runs;
    uint64_t got = 0;
    auto take = [&](const PageRun& slot) {
      const uint64_t part = std::min(slot.pages.value, n - got);
      runs.push_back({slot.start, PageCount(part)});
      got += part;
    };
    for (uint64_t i = 0; i < j && got < n; ++i) take(lower[i]);
    for (size_t i = 0; i < level.size() && got < n && runs.size() < most; ++i)
      take(level[i]);
    if (got == n) return runs;
    if (j == 0) return std::nullopt;
  }
}

}  // namespace physpool::pglist::testing
