// SPDX-License-Identifier: Apache-2.0
// Pool::Allocate: the simple, contig and multi paths (pool.h).
#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "pglist/pool.h"

namespace physpool::pglist {

// --- Allocation -------------------------------------------------------------

absl::Status Pool::Fail(Path path, absl::StatusCode code, FailReason reason,
                        absl::string_view message) {
  ++stats_.at(path).failures[static_cast<int>(reason)];
  return FailWith(code, reason, message);
}

bool Pool::NeverFits(const Constraints& c) const {
  // Could the request fit if every allocatable page were free?
  uint64_t capacity = 0;
  bool one_run_fits = false;
  for (const PhysSeg* s : order_) {
    if (!s->Eligible(c)) continue;
    const auto [lo, hi] = s->Clip(c);
    if (lo >= hi) continue;
    capacity += hi - lo;
    uint64_t cand = c.AlignUp(lo);
    if (c.CrossesBoundary(cand, c.pages.value))
      cand = c.AlignUp(c.NextCell(cand));
    one_run_fits |= cand + c.pages.value <= hi;
  }
  uint64_t usable = capacity;
  if (!c.privileged) {
    const uint64_t total = total_pages().value;
    const uint64_t reserve = opts_.reserve_pages.value;
    usable = std::min(usable, total > reserve ? total - reserve : 0);
  }
  if (usable < c.pages.value) return true;
  return c.max_runs == 1 && !one_run_fits;
}

absl::Status Pool::CheckCapacity(const Constraints& c) const {
  const uint64_t free = allocatable_free_pages().value;
  const uint64_t n = c.pages.value;
  if (free < n) {
    return FailWith(
        absl::StatusCode::kResourceExhausted, FailReason::kNoSpace,
        absl::StrCat("no memory: ", n, " pages requested, ", free, " free"));
  }
  if (!c.privileged && free - n < opts_.reserve_pages.value) {
    return FailWith(absl::StatusCode::kResourceExhausted, FailReason::kReserve,
                    absl::StrCat("reserve: ", n, " pages would leave ",
                                 free - n, " free, below the reserve of ",
                                 opts_.reserve_pages.value));
  }
  return absl::OkStatus();
}

std::optional<std::vector<PageRun>> Pool::TrySimple(const Constraints& c) {
  std::vector<PageRun> runs;
  PageCount left = c.pages;
  for (PhysSeg* s : order_) {
    if (!s->Eligible(c)) continue;
    left -= s->TakeNextFit(c, left, &runs);
    if (left.value == 0) return runs;
  }
  // Not enough: give the pages back; the hints stay where the walk left
  // them, as the seed's do.
  for (const PageRun& r : runs) FindSegment(r.start)->Release(r).IgnoreError();
  for (const PageRun& r : runs) FindSegment(r.start)->Sync();
  return std::nullopt;
}

std::vector<std::pair<size_t, size_t>> Pool::Levels() const {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < order_.size(); ++i) {
    if (i == 0 ||
        order_[i]->spec().freelist != order_[i - 1]->spec().freelist) {
      out.emplace_back(i, i);
    }
    out.back().second = i + 1;
  }
  return out;
}

std::optional<std::vector<PageRun>> Pool::TryContig(const Constraints& c,
                                                    size_t begin, size_t end) {
  // Segments in allocation order, each searched completely: a request lands
  // in a later segment only when no earlier one holds a feasible window.
  const bool best_fit = opts_.placement == Placement::kBestFit;
  for (size_t i = begin; i < end; ++i) {
    PhysSeg* s = order_[i];
    if (!s->Eligible(c)) continue;
    const std::optional<Pfn> start =
        best_fit ? s->FindBestFit(c) : s->FindRun(c);
    if (!start) continue;
    const PageRun r{*start, c.pages};
    s->Take(r);
    s->set_hint(r.end());
    return std::vector<PageRun>{r};
  }
  return std::nullopt;
}

namespace {

bool Larger(const PageRun& a, const PageRun& b) { return a.pages > b.pages; }

// The runs of a multi answer from the slots of the freelists below the
// current one (`lower`) and of the current one (`level`), each sorted
// largest first, ties in pool order; nullopt if they cannot hold `pages`
// in `most` runs (0: any number). Of the answers, the one with the fewest
// pages of the current freelist: the j largest lower slots whole, then the
// largest level slots, the last in part, for the largest feasible j (a
// larger j never gives fewer lower pages).
std::optional<std::vector<PageRun>> ChooseRuns(
    const std::vector<PageRun>& lower, const std::vector<PageRun>& level,
    PageCount pages, uint64_t most) {
  const uint64_t n = pages.value;
  const uint64_t cap = most != 0 ? most : lower.size() + level.size();
  const size_t jmax = std::min<uint64_t>(cap, lower.size());
  // Pages of the j largest lower slots, and of the m largest level slots.
  std::vector<uint64_t> lsum(jmax + 1, 0);
  for (size_t j = 0; j < jmax; ++j)
    lsum[j + 1] = lsum[j] + lower[j].pages.value;
  const size_t mmax = std::min<uint64_t>(cap, level.size());
  std::vector<uint64_t> ksum(mmax + 1, 0);
  for (size_t m = 0; m < mmax; ++m)
    ksum[m + 1] = ksum[m] + level[m].pages.value;
  for (size_t j = jmax + 1; j-- > 0;) {
    if (lsum[j] + ksum[std::min<uint64_t>(cap - j, mmax)] < n) continue;
    std::vector<PageRun> runs;
    PageCount left = pages;
    auto take = [&](const PageRun& slot) {
      runs.push_back({slot.start, std::min(slot.pages, left)});
      left -= runs.back().pages;
    };
    for (size_t i = 0; i < j && left.value != 0; ++i) take(lower[i]);
    for (size_t i = 0; i < mmax && left.value != 0; ++i) take(level[i]);
    return runs;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::vector<PageRun>> Pool::TryMulti(const Constraints& c,
                                                   size_t begin, size_t end,
                                                   MultiSlots* slots) {
  // Each slot (a free stretch of the window within one boundary cell, from
  // its first aligned page) gives at most one useful run, so the request
  // fits in the freelists up to this one iff their largest `most` slots
  // hold enough pages. Cheap necessary condition first: enough free pages.
  uint64_t free = 0;
  for (size_t i = 0; i < end; ++i) {
    if (order_[i]->Eligible(c)) free += order_[i]->free_pages().value;
  }
  if (free < c.pages.value) return std::nullopt;
  auto gather = [&](size_t from, size_t to) {
    std::vector<PageRun> out;
    for (size_t i = from; i < to; ++i) {
      if (!order_[i]->Eligible(c)) continue;
      order_[i]->ForEachSlot(c, [&](const PageRun& r) { out.push_back(r); });
    }
    std::stable_sort(out.begin(), out.end(), Larger);
    return out;
  };
  if (slots->gathered < begin) {
    // The slots of the freelists below, largest first, ties in pool order
    // (those gathered before come first in it).
    std::vector<PageRun> more = gather(slots->gathered, begin), merged;
    std::merge(slots->lower.begin(), slots->lower.end(), more.begin(),
               more.end(), std::back_inserter(merged), Larger);
    slots->lower = std::move(merged);
    slots->gathered = begin;
  }
  const uint64_t most =
      c.max_runs != 0 && (c.run_cap == 0 || c.max_runs < c.run_cap) ? c.max_runs
                                                                    : c.run_cap;
  auto runs = ChooseRuns(slots->lower, gather(begin, end), c.pages, most);
  if (runs) {
    for (const PageRun& r : *runs) FindSegment(r.start)->Take(r);
  }
  return runs;
}

absl::StatusOr<Allocation> Pool::Allocate(const Request& req) {
  auto c = Normalize(req, opts_.page_size);
  // An invalid request is counted on the path its fields point to.
  const uint64_t pages = req.bytes / opts_.page_size + 1;
  const bool simple =
      c.ok() ? c->Simple()
             : req.alignment <= opts_.page_size && req.boundary == 0 &&
                   (req.max_segments == 0 || req.max_segments >= pages);
  const Path path = simple ? Path::kSimple : Path::kContig;
  ++stats_.at(path).attempts;
  if (!c.ok()) {
    return Fail(path, c.status().code(), FailReason::kInvalid,
                c.status().message());
  }
  // A simple request refused before the walk moves the hints as the seed's
  // walk would: where the window's free pages are too few, the walk
  // exhausts every eligible segment; where they would do, or no page at
  // all is free (the seed then does not walk), nothing moves.
  auto exhaust_hints = [&] {
    if (path != Path::kSimple || allocatable_free_pages().value == 0) return;
    uint64_t in_window = 0;
    for (const PhysSeg* s : order_) {
      if (!s->Eligible(*c)) continue;
      const auto [lo, hi] = s->Clip(*c);
      if (lo < hi)
        in_window += s->map().CountFree(s->Off(Pfn(lo)), s->Off(Pfn(hi)));
    }
    if (in_window >= c->pages.value) return;
    for (PhysSeg* s : order_) {
      if (s->Eligible(*c)) s->ExhaustHint(*c);
    }
  };
  if (NeverFits(*c)) {
    exhaust_hints();
    return Fail(
        path, absl::StatusCode::kResourceExhausted, FailReason::kNeverFits,
        absl::StrCat("never fits: no layout of the allocatable segments",
                     " (less the reserve) can hold ",
                     Describe(*c, opts_.page_size)));
  }
  if (auto s = CheckCapacity(*c); !s.ok()) {
    exhaust_hints();
    ++stats_.at(path).failures[static_cast<int>(FailReasonOf(s))];
    return s;
  }
  if (path == Path::kSimple) {
    if (auto runs = TrySimple(*c)) {
      if (c->run_cap == 0 || Canonical(*runs, true).size() <= c->run_cap) {
        return Record(std::move(*runs), path, c->preemptible);
      }
      // Too fragmented for one answer: give the pages back (the hints stay,
      // as after any failed walk) and take the fewest runs instead.
      for (const PageRun& r : *runs)
        FindSegment(r.start)->Release(r).IgnoreError();
      for (const PageRun& r : *runs) FindSegment(r.start)->Sync();
      ++stats_.at(Path::kSimple)
            .failures[static_cast<int>(FailReason::kNoSpace)];
      ++stats_.fallbacks[static_cast<int>(Path::kSimple)]
                        [static_cast<int>(Path::kMulti)];
      ++stats_.at(Path::kMulti).attempts;
      Constraints capped = *c;
      capped.max_runs = c->run_cap;
      MultiSlots slots;
      for (const auto& [begin, end] : Levels()) {
        if (auto multi = TryMulti(capped, begin, end, &slots)) {
          return Record(std::move(*multi), Path::kMulti, c->preemptible);
        }
      }
      return Fail(
          Path::kMulti, absl::StatusCode::kResourceExhausted,
          FailReason::kNoSpace,
          absl::StrCat("no space: the free memory is in more than ", c->run_cap,
                       " pieces (leases.max_runs_per_lease) for ",
                       Describe(*c, opts_.page_size)));
    }
  } else {
    // Freelist by freelist: one run in this freelist's segments; then, if
    // the request accepts several, runs from the freelists up to this one.
    // A request lands in a freelist only when no answer exists below it.
    // The counters read as if contig were tried everywhere first: a multi
    // answer (or failure) counts a contig failure and its fallback.
    const bool multi = c->max_runs >= 2;
    auto fall_back_to_multi = [&] {
      ++stats_.at(Path::kContig)
            .failures[static_cast<int>(FailReason::kNoSpace)];
      ++stats_.fallbacks[static_cast<int>(Path::kContig)]
                        [static_cast<int>(Path::kMulti)];
      ++stats_.at(Path::kMulti).attempts;
    };
    MultiSlots slots;
    for (const auto& [begin, end] : Levels()) {
      if (auto runs = TryContig(*c, begin, end))
        return Record(std::move(*runs), path, c->preemptible);
      if (!multi) continue;
      if (auto runs = TryMulti(*c, begin, end, &slots)) {
        fall_back_to_multi();
        return Record(std::move(*runs), Path::kMulti, c->preemptible);
      }
    }
    if (multi) {
      fall_back_to_multi();
      return Fail(Path::kMulti, absl::StatusCode::kResourceExhausted,
                  FailReason::kNoSpace,
                  absl::StrCat("no space: no placement in free memory for ",
                               Describe(*c, opts_.page_size)));
    }
  }
  return Fail(path, absl::StatusCode::kResourceExhausted, FailReason::kNoSpace,
              absl::StrCat("no space: no placement in free memory for ",
                           Describe(*c, opts_.page_size)));
}

}  // namespace physpool::pglist
