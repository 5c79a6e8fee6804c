#include "pglist/pool.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace physpool::pglist {
namespace {

// The request in an operator's terms, for error messages.
std::string Describe(const Constraints& c, uint64_t ps) {
  const bool unbounded = c.high.value == kMaxIova / ps + 1;
  return absl::StrCat(
      c.pages.value, " pages (alignment ", c.align * ps, ", boundary ",
      c.boundary == 0 ? "none" : absl::StrCat(c.boundary * ps), ", window [",
      c.low.value * ps, ", ",
      unbounded ? "unbounded" : absl::StrCat(c.high.value * ps), "), ",
      c.max_runs == 0 ? "any number of" : absl::StrCat("at most ", c.max_runs),
      " runs)");
}

// Sorts runs by address. With `join`, joins neighbours that lie in the same
// segment: only for the simple path, since runs of the other paths that
// touch were cut at a boundary multiple and must stay apart.
std::vector<PageRun> Canonical(std::vector<PageRun> runs, bool join,
                               const std::function<PhysSeg*(Pfn)>& seg_of) {
  std::sort(runs.begin(), runs.end(), [](const PageRun& a, const PageRun& b) {
    return a.start < b.start;
  });
  std::vector<PageRun> out;
  for (const PageRun& r : runs) {
    if (join && !out.empty() && out.back().end() == r.start &&
        seg_of(out.back().start) == seg_of(r.start)) {
      out.back().pages += r.pages;
    } else {
      out.push_back(r);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Pool> Pool::Create(const PoolOptions& options) {
  if (!IsPowerOfTwo(options.page_size) || options.page_size < 4096 ||
      options.page_size > (uint64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size ", options.page_size,
                     " must be a power of two from 4096 to 1073741824"));
  }
  return Pool(options);
}

// --- Segments ---------------------------------------------------------------

absl::StatusOr<SegmentId> Pool::AddSegment(const SegmentSpec& spec) {
  const uint64_t ps = opts_.page_size;
  if (spec.iova % ps != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment iova ", spec.iova,
                     " is not a multiple of the page size ", ps));
  }
  if (spec.pages.value == 0 || spec.pages.value > kMaxSegmentPages) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment pages ", spec.pages.value, " must be in [1, ",
                     kMaxSegmentPages, "]"));
  }
  const auto bytes = CheckedMul(spec.pages.value, ps);
  if (!bytes || !CheckedAdd(spec.iova, *bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment at iova ", spec.iova, " with ", spec.pages.value,
                     " pages ends past 2^64"));
  }
  const uint64_t avail_end =
      spec.avail_end != 0 ? spec.avail_end : spec.pages.value;
  if (spec.avail_begin >= avail_end || avail_end > spec.pages.value) {
    return absl::InvalidArgumentError(absl::StrCat(
        "segment available range [", spec.avail_begin, ", ", avail_end,
        ") is not a non-empty part of its ", spec.pages.value, " pages"));
  }
  const Pfn base(spec.iova / ps);
  const PageRun range{base, spec.pages};
  auto next = by_base_.lower_bound(base);
  if (next != by_base_.end() &&
      range.Overlaps({next->second->base(), next->second->spec().pages})) {
    return absl::AlreadyExistsError(absl::StrCat("segment at iova ", spec.iova,
                                                 " overlaps segment ",
                                                 next->second->id()));
  }
  if (next != by_base_.begin()) {
    const PhysSeg* prev = std::prev(next)->second;
    if (range.Overlaps({prev->base(), prev->spec().pages})) {
      return absl::AlreadyExistsError(absl::StrCat(
          "segment at iova ", spec.iova, " overlaps segment ", prev->id()));
    }
  }
  const SegmentId id = next_segment_id_++;
  segs_.push_back(std::make_unique<PhysSeg>(id, spec, ps));
  by_base_[base] = segs_.back().get();
  Reorder();
  return id;
}

void Pool::Reorder() {
  order_.clear();
  for (const auto& s : segs_) order_.push_back(s.get());
  const bool big_first = opts_.strategy == Strategy::kBigFirst;
  std::sort(order_.begin(), order_.end(), [big_first](PhysSeg* a, PhysSeg* b) {
    if (a->spec().freelist != b->spec().freelist) {
      return a->spec().freelist < b->spec().freelist;
    }
    if (big_first && a->avail().pages != b->avail().pages) {
      return a->avail().pages > b->avail().pages;
    }
    return a->base() < b->base();
  });
}

PhysSeg* Pool::FindSegment(Pfn p) const {
  auto it = by_base_.upper_bound(p);
  if (it == by_base_.begin()) return nullptr;
  --it;
  return p < it->second->end() ? it->second : nullptr;
}

PhysSeg* Pool::SegmentById(SegmentId id) const {
  for (const auto& s : segs_) {
    if (s->id() == id) return s.get();
  }
  return nullptr;
}

absl::Status Pool::DrainSegment(SegmentId id) {
  PhysSeg* s = SegmentById(id);
  if (s == nullptr) return absl::NotFoundError(absl::StrCat("no segment ", id));
  s->set_draining(true);
  return absl::OkStatus();
}

absl::Status Pool::UndrainSegment(SegmentId id) {
  PhysSeg* s = SegmentById(id);
  if (s == nullptr) return absl::NotFoundError(absl::StrCat("no segment ", id));
  s->set_draining(false);
  return absl::OkStatus();
}

absl::Status Pool::RemoveSegment(SegmentId id) {
  PhysSeg* s = SegmentById(id);
  if (s == nullptr) return absl::NotFoundError(absl::StrCat("no segment ", id));
  if (s->used_pages().value != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("segment ", id, " still has ", s->used_pages().value,
                     " pages allocated"));
  }
  by_base_.erase(s->base());
  segs_.erase(std::find_if(segs_.begin(), segs_.end(),
                           [s](const auto& p) { return p.get() == s; }));
  Reorder();
  return absl::OkStatus();
}

std::vector<SegmentInfo> Pool::Segments() const {
  std::vector<SegmentInfo> out;
  for (const PhysSeg* s : order_) {
    out.push_back({s->id(), s->spec(), s->avail(), s->free_pages(),
                   s->used_pages(), s->LargestFreeRun(), s->hint(),
                   s->draining()});
  }
  return out;
}

namespace {
template <typename Key, typename F>
std::map<Key, Usage> UsageBy(const std::vector<PhysSeg*>& segs, F key) {
  std::map<Key, Usage> out;
  for (const PhysSeg* s : segs) {
    Usage& u = out[key(*s)];
    u.free_pages += s->free_pages();
    u.used_pages += s->used_pages();
    u.largest_free_run = std::max(u.largest_free_run, s->LargestFreeRun());
  }
  return out;
}
}  // namespace

std::map<uint32_t, Usage> Pool::UsageByFreelist() const {
  return UsageBy<uint32_t>(order_,
                           [](const PhysSeg& s) { return s.spec().freelist; });
}

std::map<int32_t, Usage> Pool::UsageByNuma() const {
  return UsageBy<int32_t>(order_,
                          [](const PhysSeg& s) { return s.spec().numa; });
}

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

Allocation& Pool::Record(std::vector<PageRun> runs, Path path,
                         bool preemptible) {
  const AllocationId id = next_id_++;
  Allocation& a = allocs_[id];
  a.id = id;
  a.path = path;
  a.preemptible = preemptible;
  a.runs = Canonical(std::move(runs), path == Path::kSimple,
                     [this](Pfn p) { return FindSegment(p); });
  const PageCount total = a.pages();
  for (const PageRun& r : a.runs) {
    if (preemptible) preempt_[r.start] = {r.pages, id, total};
    FindSegment(r.start)->Sync();
  }
  if (path != Path::kClaim) ++stats_.at(path).successes;
  return a;
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
      if (c->run_cap == 0 || Canonical(*runs, true, [this](Pfn p) {
                               return FindSegment(p);
                             }).size() <= c->run_cap) {
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

absl::StatusOr<ReclaimPlan> Pool::PlanReclaim(const Request& req) {
  auto c = Normalize(req, opts_.page_size);
  if (c.ok()) {
    const Path from = c->Simple()        ? Path::kSimple
                      : c->max_runs != 1 ? Path::kMulti
                                         : Path::kContig;
    ++stats_.fallbacks[static_cast<int>(from)]
                      [static_cast<int>(Path::kAggressive)];
  }
  ++stats_.at(Path::kAggressive).attempts;
  if (!c.ok()) {
    return Fail(Path::kAggressive, c.status().code(), FailReason::kInvalid,
                c.status().message());
  }
  std::optional<ReclaimWindow> best;
  if (!preempt_.empty()) {
    for (const PhysSeg* s : order_) {
      if (!s->Eligible(*c)) continue;
      auto w = FindReclaimWindow(*s, preempt_, *c);
      if (w && (!best || w->BetterThan(*best))) best = w;
    }
  }
  if (!best) {
    return Fail(Path::kAggressive, absl::StatusCode::kResourceExhausted,
                FailReason::kNoReclaim,
                absl::StrCat("no reclaim: no window of free and preemptible",
                             " pages admits ", Describe(*c, opts_.page_size)));
  }
  ReclaimPlan plan;
  plan.window = {best->start, c->pages};
  plan.reclaim_pages = PageCount(best->cost);
  // Runs are at most one window apart from their start; scan from the last
  // run starting at or before the window.
  auto it = preempt_.upper_bound(plan.window.start);
  if (it != preempt_.begin()) --it;
  for (; it != preempt_.end() && it->first < plan.window.end(); ++it) {
    if (PageRun{it->first, it->second.pages}.Overlaps(plan.window)) {
      plan.victims.push_back(it->second.id);
    }
  }
  std::sort(plan.victims.begin(), plan.victims.end());
  plan.victims.erase(std::unique(plan.victims.begin(), plan.victims.end()),
                     plan.victims.end());
  // The victims' pages (the plan's cost) all come back.
  const uint64_t free_after =
      allocatable_free_pages().value + best->cost - c->pages.value;
  if (!c->privileged && free_after < opts_.reserve_pages.value) {
    return Fail(Path::kAggressive, absl::StatusCode::kResourceExhausted,
                FailReason::kReserve,
                absl::StrCat("reserve: reclaiming would leave ", free_after,
                             " free, below the reserve of ",
                             opts_.reserve_pages.value));
  }
  return plan;
}

absl::StatusOr<Allocation> Pool::CommitReclaim(const Request& req,
                                               const ReclaimPlan& plan) {
  auto stale = [&](absl::string_view why) {
    return Fail(Path::kAggressive, absl::StatusCode::kFailedPrecondition,
                FailReason::kNoReclaim,
                absl::StrCat("stale reclaim plan: ", why));
  };
  auto c = Normalize(req, opts_.page_size);
  if (!c.ok()) {
    return Fail(Path::kAggressive, c.status().code(), FailReason::kInvalid,
                c.status().message());
  }
  const PageRun& w = plan.window;
  PhysSeg* seg = FindSegment(w.start);
  if (w.pages != c->pages || !c->Admits(w.start.value, w.pages.value) ||
      seg == nullptr || !seg->Eligible(*c) || !seg->Holds(w)) {
    return stale("the window does not fit the request or its segment");
  }
  uint64_t victim_pages_in_window = 0;
  for (AllocationId v : plan.victims) {
    const Allocation* a = Find(v);
    if (a == nullptr || !a->preemptible) {
      return stale(
          absl::StrCat("allocation ", v, " is gone or not preemptible"));
    }
    for (const PageRun& r : a->runs) {
      if (!r.Overlaps(w)) continue;
      const Pfn s = std::max(r.start, w.start);
      const Pfn e = std::min(r.end(), w.end());
      victim_pages_in_window += (e - s).value;
    }
  }
  const uint64_t used = w.pages.value - seg->map().CountFree(seg->Off(w.start),
                                                             seg->Off(w.end()));
  if (used != victim_pages_in_window) {
    return stale("the window holds pages of allocations not in the plan");
  }
  for (AllocationId v : plan.victims) {
    if (auto s = Free(v); !s.ok()) return s;
  }
  // The hint stays: the seed's aggressive path never moves it either.
  seg->Take(w);
  return Record({w}, Path::kAggressive, c->preemptible);
}

absl::StatusOr<Allocation> Pool::Claim(absl::Span<const PageRun> runs,
                                       bool preemptible) {
  std::vector<PageRun> sorted(runs.begin(), runs.end());
  std::sort(
      sorted.begin(), sorted.end(),
      [](const PageRun& a, const PageRun& b) { return a.start < b.start; });
  if (sorted.empty()) return absl::InvalidArgumentError("claim of no runs");
  for (size_t i = 0; i < sorted.size(); ++i) {
    const PageRun& r = sorted[i];
    const PhysSeg* s = FindSegment(r.start);
    if (r.pages.value == 0 || s == nullptr || !s->Holds(r)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "run [pfn ", r.start.value, " +", r.pages.value,
          ") is empty or not inside one segment's available range"));
    }
    if (i > 0 && sorted[i - 1].Overlaps(r)) {
      return absl::InvalidArgumentError(
          absl::StrCat("runs overlap at pfn ", r.start.value));
    }
    if (!s->IsFree(r)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "run [pfn ", r.start.value, " +", r.pages.value, ") is in use"));
    }
  }
  for (const PageRun& r : sorted) FindSegment(r.start)->Take(r);
  return Record(std::move(sorted), Path::kClaim, preemptible);
}

absl::Status Pool::Free(AllocationId id) {
  auto it = allocs_.find(id);
  if (it == allocs_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "allocation ", id, " is not live (never allocated, or already freed)"));
  }
  for (const PageRun& r : it->second.runs) {
    PhysSeg* s = FindSegment(r.start);
    absl::Status st =
        s == nullptr ? absl::InternalError("no segment") : s->Release(r);
    if (!st.ok()) {
      return absl::InternalError(
          absl::StrCat("allocation ", id, " is inconsistent: ", st.message()));
    }
    if (it->second.preemptible) preempt_.erase(r.start);
  }
  for (const PageRun& r : it->second.runs) FindSegment(r.start)->Sync();
  allocs_.erase(it);
  return absl::OkStatus();
}

absl::Status Pool::SetPreemptible(AllocationId id, bool preemptible) {
  auto it = allocs_.find(id);
  if (it == allocs_.end()) {
    return absl::NotFoundError(absl::StrCat("allocation ", id, " is not live"));
  }
  Allocation& a = it->second;
  if (a.preemptible == preemptible) return absl::OkStatus();
  a.preemptible = preemptible;
  const PageCount total = a.pages();
  for (const PageRun& r : a.runs) {
    if (preemptible) {
      preempt_[r.start] = {r.pages, id, total};
    } else {
      preempt_.erase(r.start);
    }
  }
  return absl::OkStatus();
}

// --- Inspection -------------------------------------------------------------

std::vector<PageRun> Pool::FreeRunsIn(const PageRun& r) const {
  std::vector<PageRun> out;
  const PhysSeg* s = FindSegment(r.start);
  if (s == nullptr || !s->Holds(r)) return out;
  const FreeMap& m = s->map();
  const uint64_t end = s->Off(r.end());
  for (uint64_t pos = s->Off(r.start); pos < end;) {
    const uint64_t a = m.NextFree(pos, end);
    if (a >= end) break;
    const uint64_t b = m.NextUsed(a, end);
    out.push_back({s->base() + PageCount(a), PageCount(b - a)});
    pos = b;
  }
  return out;
}

const Allocation* Pool::Find(AllocationId id) const {
  auto it = allocs_.find(id);
  return it == allocs_.end() ? nullptr : &it->second;
}

PageCount Pool::total_pages() const {
  PageCount n;
  for (const auto& s : segs_) n += s->avail().pages;
  return n;
}

PageCount Pool::free_pages() const {
  PageCount n;
  for (const auto& s : segs_) n += s->free_pages();
  return n;
}

PageCount Pool::allocatable_free_pages() const {
  PageCount n;
  for (const auto& s : segs_) {
    if (!s->draining()) n += s->free_pages();
  }
  return n;
}

size_t Pool::MetadataBytes() const {
  size_t n = 0;
  for (const auto& s : segs_) n += s->map().MetadataBytes();
  return n;
}

absl::Status Pool::Verify() const {
  std::vector<std::pair<PageRun, AllocationId>> all;
  absl::flat_hash_map<const PhysSeg*, uint64_t> used;
  size_t preemptible_runs = 0;
  for (const auto& [id, a] : allocs_) {
    for (const PageRun& r : a.runs) {
      const PhysSeg* s = FindSegment(r.start);
      if (s == nullptr || !s->Holds(r) || !s->IsUsed(r)) {
        return absl::InternalError(
            absl::StrCat("allocation ", id, " run at pfn ", r.start.value,
                         " is outside a segment or not marked used"));
      }
      used[s] += r.pages.value;
      all.emplace_back(r, id);
      if (a.preemptible) {
        ++preemptible_runs;
        auto it = preempt_.find(r.start);
        if (it == preempt_.end() || it->second.id != id ||
            it->second.pages != r.pages) {
          return absl::InternalError(
              absl::StrCat("preemptible index misses allocation ", id));
        }
      }
    }
  }
  if (preemptible_runs != preempt_.size()) {
    return absl::InternalError("preemptible index has stale runs");
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.first.start < b.first.start;
  });
  for (size_t i = 1; i < all.size(); ++i) {
    if (all[i - 1].first.Overlaps(all[i].first)) {
      return absl::InternalError(absl::StrCat("allocations ", all[i - 1].second,
                                              " and ", all[i].second,
                                              " overlap"));
    }
  }
  for (const auto& s : segs_) {
    const uint64_t want = used.contains(s.get()) ? used[s.get()] : 0;
    if (s->used_pages().value != want ||
        s->free_pages() + s->used_pages() != s->avail().pages) {
      return absl::InternalError(
          absl::StrCat("segment ", s->id(), " marks ", s->used_pages().value,
                       " pages used but allocations hold ", want));
    }
  }
  return absl::OkStatus();
}

}  // namespace physpool::pglist
