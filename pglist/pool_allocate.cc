// Pool::Allocate: the simple, contig and multi paths (pool.h).
#include <algorithm>
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

std::optional<std::vector<PageRun>> Pool::TryContig(const Constraints& c) {
  // Segments in allocation order, each searched completely: a request lands
  // in a later segment (or freelist) only when no earlier one holds a
  // feasible window.
  const bool best_fit = opts_.placement == Placement::kBestFit;
  for (PhysSeg* s : order_) {
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

std::optional<std::vector<PageRun>> Pool::TryMulti(const Constraints& c) {
  // Each slot (a free stretch of the window within one boundary cell, from
  // its first aligned page) gives at most one useful run; the largest slots
  // first make the fewest runs, so the request fits iff the largest
  // max_runs slots hold enough pages. Freelists in order: the slots of
  // freelists up to f are used only when those below f cannot serve.
  std::vector<PageRun> slots;
  std::vector<size_t> list_ends;  // slots.size() at each freelist's end
  for (size_t i = 0; i < order_.size(); ++i) {
    const PhysSeg* s = order_[i];
    if (s->Eligible(c)) {
      s->ForEachSlot(c, [&](const PageRun& r) { slots.push_back(r); });
    }
    if (i + 1 == order_.size() ||
        order_[i + 1]->spec().freelist != s->spec().freelist) {
      list_ends.push_back(slots.size());
    }
  }
  const uint64_t most =
      c.max_runs != 0 && (c.run_cap == 0 || c.max_runs < c.run_cap) ? c.max_runs
                                                                    : c.run_cap;
  for (size_t end : list_ends) {
    std::vector<PageRun> prefix(slots.begin(), slots.begin() + end);
    std::stable_sort(
        prefix.begin(), prefix.end(),
        [](const PageRun& a, const PageRun& b) { return a.pages > b.pages; });
    std::vector<PageRun> runs;
    PageCount left = c.pages;
    for (const PageRun& slot : prefix) {
      if (left.value == 0 || (most != 0 && runs.size() == most)) break;
      runs.push_back({slot.start, std::min(slot.pages, left)});
      left -= runs.back().pages;
    }
    if (left.value != 0) continue;
    for (const PageRun& r : runs) FindSegment(r.start)->Take(r);
    return runs;
  }
  return std::nullopt;
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
      if (auto multi = TryMulti(capped)) {
        return Record(std::move(*multi), Path::kMulti, c->preemptible);
      }
      return Fail(
          Path::kMulti, absl::StatusCode::kResourceExhausted,
          FailReason::kNoSpace,
          absl::StrCat("no space: the free memory is in more than ", c->run_cap,
                       " pieces (leases.max_runs_per_lease) for ",
                       Describe(*c, opts_.page_size)));
    }
  } else {
    if (auto runs = TryContig(*c))
      return Record(std::move(*runs), path, c->preemptible);
    if (c->max_runs >= 2) {
      ++stats_.at(Path::kContig)
            .failures[static_cast<int>(FailReason::kNoSpace)];
      ++stats_.fallbacks[static_cast<int>(Path::kContig)]
                        [static_cast<int>(Path::kMulti)];
      ++stats_.at(Path::kMulti).attempts;
      if (auto runs = TryMulti(*c)) {
        return Record(std::move(*runs), Path::kMulti, c->preemptible);
      }
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
