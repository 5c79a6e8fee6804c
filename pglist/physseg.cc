// SPDX-License-Identifier: Apache-2.0
#include "pglist/physseg.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "pglist/placement.h"

namespace physpool::pglist {

PhysSeg::PhysSeg(SegmentId id, const SegmentSpec& spec, uint64_t page_size)
    : id_(id),
      spec_(spec),
      base_(Pfn(spec.iova / page_size)),
      avail_begin_(base_ + PageCount(spec.avail_begin)),
      avail_end_(base_ + PageCount(spec.avail_end != 0 ? spec.avail_end
                                                       : spec.pages.value)),
      map_(spec.pages.value),
      hint_(avail_begin_) {
  map_.MarkUsed(0, Off(avail_begin_));
  map_.MarkUsed(Off(avail_end_), map_.size());
}

std::pair<uint64_t, uint64_t> PhysSeg::Clip(const Constraints& c) const {
  return {std::max(c.low.value, avail_begin_.value),
          std::min(c.high.value, avail_end_.value)};
}

std::optional<Pfn> PhysSeg::Scan(const Constraints& c, uint64_t from,
                                 uint64_t cand_limit, uint64_t hi) const {
  const uint64_t n = c.pages.value;
  uint64_t cand = c.AlignUp(from);
  for (;;) {
    if (cand >= cand_limit || cand + n > hi) return std::nullopt;
    if (c.CrossesBoundary(cand, n)) {
      // Every start before the crossed multiple crosses it too.
      cand = c.AlignUp(c.NextCell(cand));
      continue;
    }
    const uint64_t used = map_.NextUsed(Off(Pfn(cand)), Off(Pfn(cand + n)));
    if (used == Off(Pfn(cand + n))) return Pfn(cand);
    // No admissible run starts at or before a used page: the next one
    // starts at or after the first free run of n pages past it.
    const uint64_t run = map_.NextRun(used + 1, n, Off(Pfn(hi)));
    if (run == Off(Pfn(hi))) return std::nullopt;
    cand = c.AlignUp(base_.value + run);
  }
}

std::optional<Pfn> PhysSeg::FindRun(const Constraints& c) const {
  const auto [lo, hi] = Clip(c);
  if (lo >= hi || hi - lo < c.pages.value) return std::nullopt;
  const uint64_t start = std::clamp(hint_.value, lo, hi);
  if (auto found = Scan(c, start, hi, hi)) return found;
  // Wrap once: every start below the first pass's first candidate, with
  // runs that may reach past the hint (the seed stops them at the hint).
  if (start > lo) return Scan(c, lo, c.AlignUp(start), hi);
  return std::nullopt;
}

std::optional<Pfn> PhysSeg::FindBestFit(const Constraints& c) const {
  const auto [lo, hi] = Clip(c);
  const uint64_t n = c.pages.value;
  if (lo >= hi || hi - lo < n) return std::nullopt;
  std::optional<Pfn> best;
  uint64_t best_len = 0;
  int candidates = 0, stretches = 0;
  // `pos` is the window's start or the used page that ended the last
  // stretch, so each NextRun answer is the start of a maximal stretch.
  for (uint64_t pos = lo; pos < hi && candidates < kBestFitCandidates;) {
    const uint64_t a =
        base_.value + map_.NextRun(Off(Pfn(pos)), n, Off(Pfn(hi)));
    if (a >= hi) break;
    const uint64_t b =
        base_.value + map_.NextUsed(Off(Pfn(a + n)), Off(Pfn(hi)));
    // The stretch's first admissible start: its first aligned page, or, if
    // that run crosses a boundary multiple, the first aligned page after it
    // (which starts a boundary cell, so its run crosses none).
    uint64_t s = c.AlignUp(a);
    if (s + n <= b && c.CrossesBoundary(s, n)) s = c.AlignUp(c.NextCell(s));
    if (s + n <= b) {
      ++candidates;
      if (!best || b - a < best_len) {
        best = Pfn(s);
        best_len = b - a;
        if (best_len == n) break;  // nothing is shorter
      }
    }
    pos = b;
    if (++stretches >= kBestFitStretches && best) break;
  }
  return best;
}

void PhysSeg::Gather(uint64_t from, uint64_t to, PageCount want,
                     PageCount* taken, std::vector<PageRun>* out) {
  uint64_t pos = from;
  while (pos < to && *taken < want) {
    const uint64_t a = base_.value + map_.NextFree(Off(Pfn(pos)), Off(Pfn(to)));
    if (a >= to) return;
    const uint64_t limit = std::min(to, a + (want - *taken).value);
    const uint64_t b =
        base_.value + map_.NextUsed(Off(Pfn(a)), Off(Pfn(limit)));
    const PageRun r{Pfn(a), PageCount(b - a)};
    Take(r);
    out->push_back(r);
    *taken += r.pages;
    hint_ = r.end();
    pos = b;
  }
}

PageCount PhysSeg::TakeNextFit(const Constraints& c, PageCount want,
                               std::vector<PageRun>* out) {
  const auto [lo, hi] = Clip(c);
  PageCount taken;
  if (lo >= hi) return taken;
  // As the seed: from the hint to the window's end; then, unless the hint
  // is at the segment's start, from the window's start to the hint. A pass
  // that runs out leaves the hint at its limit.
  const uint64_t hint = hint_.value;
  Gather(std::max(lo, hint), hi, want, &taken, out);
  if (taken == want) return taken;
  if (hint == avail_begin_.value) {
    hint_ = Pfn(hi);
    return taken;
  }
  const uint64_t limit = std::min(hi, hint);
  Gather(lo, limit, want, &taken, out);
  if (taken < want) hint_ = Pfn(limit);
  return taken;
}

void PhysSeg::ExhaustHint(const Constraints& c) {
  const auto [lo, hi] = Clip(c);
  if (lo >= hi) return;
  hint_ = Pfn(hint_ == avail_begin_ ? hi : std::min(hi, hint_.value));
}

void PhysSeg::Take(const PageRun& r) {
  map_.MarkUsed(Off(r.start), Off(r.end()));
}

absl::Status PhysSeg::Release(const PageRun& r) {
  if (!Holds(r)) {
    return absl::FailedPreconditionError(
        absl::StrCat("run [pfn ", r.start.value, " +", r.pages.value,
                     ") is not inside the available range of segment ", id_));
  }
  if (!IsUsed(r)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "run [pfn ", r.start.value, " +", r.pages.value, ") of segment ", id_,
        " has free pages: double free or a run that was never allocated"));
  }
  map_.MarkFree(Off(r.start), Off(r.end()));
  return absl::OkStatus();
}

}  // namespace physpool::pglist
