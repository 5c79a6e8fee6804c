// SPDX-License-Identifier: Apache-2.0
#include "pglist/testing/reference_pool.h"

#include <algorithm>
#include <optional>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace physpool::pglist::testing {
namespace {
absl::Status Exhausted(FailReason r) {
  return FailWith(absl::StatusCode::kResourceExhausted, r, "model");
}
}  // namespace

absl::StatusOr<SegmentId> ReferencePool::AddSegment(const SegmentSpec& spec) {
  const uint64_t ps = opts_.page_size;
  const uint64_t avail_end = spec.avail_end ? spec.avail_end : spec.pages.value;
  if (spec.iova % ps != 0 || spec.pages.value == 0 ||
      spec.pages.value > Pool::kMaxSegmentPages ||
      spec.avail_begin >= avail_end || avail_end > spec.pages.value) {
    return absl::InvalidArgumentError("model: bad segment");
  }
  const uint64_t base = spec.iova / ps;
  for (const Seg& s : segs_) {
    if (base < s.base + s.pages && s.base < base + spec.pages.value) {
      return absl::AlreadyExistsError("model: overlap");
    }
  }
  Seg s{next_seg_++,
        base,
        spec.pages.value,
        base + spec.avail_begin,
        base + avail_end,
        spec.freelist,
        false,
        base + spec.avail_begin,
        std::vector<uint8_t>(spec.pages.value, kFree)};
  for (uint64_t p = s.base; p < s.base + s.pages; ++p) {
    if (p < s.avail_begin || p >= s.avail_end) s.at(p) = kUsed;
  }
  segs_.push_back(std::move(s));
  return segs_.back().id;
}

absl::Status ReferencePool::DrainSegment(SegmentId id, bool drain) {
  for (Seg& s : segs_) {
    if (s.id == id) {
      s.draining = drain;
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError("model");
}

absl::Status ReferencePool::RemoveSegment(SegmentId id) {
  for (size_t i = 0; i < segs_.size(); ++i) {
    if (segs_[i].id != id) continue;
    for (uint64_t p = segs_[i].avail_begin; p < segs_[i].avail_end; ++p) {
      if (segs_[i].at(p) != kFree)
        return absl::FailedPreconditionError("model");
    }
    segs_.erase(segs_.begin() + i);
    return absl::OkStatus();
  }
  return absl::NotFoundError("model");
}

std::vector<ReferencePool::Seg*> ReferencePool::Order() {
  std::vector<Seg*> order;
  for (Seg& s : segs_) order.push_back(&s);
  const bool big = opts_.strategy == Strategy::kBigFirst;
  std::sort(order.begin(), order.end(), [big](Seg* a, Seg* b) {
    if (a->freelist != b->freelist) return a->freelist < b->freelist;
    const uint64_t sa = a->avail_end - a->avail_begin;
    const uint64_t sb = b->avail_end - b->avail_begin;
    if (big && sa != sb) return sa > sb;
    return a->base < b->base;
  });
  return order;
}

ReferencePool::Seg* ReferencePool::SegOf(uint64_t pfn) {
  for (Seg& s : segs_) {
    if (s.base <= pfn && pfn < s.base + s.pages) return &s;
  }
  return nullptr;
}

std::pair<uint64_t, uint64_t> ReferencePool::Clip(const Seg& s,
                                                  const Constraints& c) const {
  return {std::max(c.low.value, s.avail_begin),
          std::min(c.high.value, s.avail_end)};
}

bool ReferencePool::AllFree(Seg& s, uint64_t start, uint64_t n) {
  for (uint64_t p = start; p < start + n; ++p) {
    if (s.at(p) != kFree) return false;
  }
  return true;
}

void ReferencePool::Mark(uint64_t start, uint64_t n, uint8_t state) {
  for (uint64_t p = start; p < start + n; ++p) SegOf(p)->at(p) = state;
}

uint64_t ReferencePool::free_pages() const {
  uint64_t n = 0;
  for (const Seg& s : segs_) {
    n += std::count(s.state.begin(), s.state.end(), kFree);
  }
  return n;
}

std::map<SegmentId, uint64_t> ReferencePool::Hints() const {
  std::map<SegmentId, uint64_t> out;
  for (const Seg& s : segs_) out[s.id] = s.hint;
  return out;
}

uint64_t ReferencePool::total_pages() const {
  uint64_t n = 0;
  for (const Seg& s : segs_) n += s.avail_end - s.avail_begin;
  return n;
}

uint64_t ReferencePool::used_pages() const {
  return total_pages() - free_pages();
}

absl::Status ReferencePool::Precheck(const Constraints& c) {
  const uint64_t n = c.pages.value;
  uint64_t capacity = 0, free = 0;
  bool one_run = false;
  for (Seg* s : Order()) {
    if (s->draining) continue;
    for (uint64_t p = s->avail_begin; p < s->avail_end; ++p)
      free += s->at(p) == kFree;
    const auto [lo, hi] = Clip(*s, c);
    if (lo >= hi) continue;
    capacity += hi - lo;
    for (uint64_t cand = lo; cand + n <= hi && !one_run; ++cand) {
      one_run = c.Admits(cand, n);
    }
  }
  uint64_t usable = capacity;
  const uint64_t total = total_pages(), reserve = opts_.reserve_pages.value;
  if (!c.privileged)
    usable = std::min(usable, total > reserve ? total - reserve : 0);
  if (usable < n || (c.max_runs == 1 && !one_run)) {
    return Exhausted(FailReason::kNeverFits);
  }
  if (free < n) return Exhausted(FailReason::kNoSpace);
  if (!c.privileged && free - n < reserve)
    return Exhausted(FailReason::kReserve);
  return absl::OkStatus();
}

Allocation ReferencePool::Record(std::vector<PageRun> runs, Path path,
                                 bool preemptible) {
  Allocation a;
  a.id = next_id_++;
  a.path = path;
  a.preemptible = preemptible;
  std::sort(runs.begin(), runs.end(), [](const PageRun& x, const PageRun& y) {
    return x.start < y.start;
  });
  for (const PageRun& r : runs) {
    Mark(r.start.value, r.pages.value, preemptible ? kPreemptible : kUsed);
    // Neighbouring pages join only on the simple path: the other paths'
    // touching runs were cut at a boundary multiple.
    if (path == Path::kSimple && !a.runs.empty() &&
        a.runs.back().end() == r.start &&
        SegOf(r.start.value) == SegOf(r.start.value - 1)) {
      a.runs.back().pages += r.pages;
    } else {
      a.runs.push_back(r);
    }
  }
  allocs_[a.id] = a;
  return a;
}

absl::StatusOr<Allocation> ReferencePool::Allocate(const Request& req) {
  auto cor = Normalize(req, opts_.page_size);
  if (!cor.ok())
    return FailWith(cor.status().code(), FailReason::kInvalid, "model");
  const Constraints c = *cor;
  const uint64_t n = c.pages.value;
  const std::vector<Seg*> order = Order();
  // The simple walk, page by page as the seed's uvm_pglistalloc_s_ps: from
  // the hint to the window's end, then (unless the hint is at the
  // segment's start) from the window's start to the hint; a segment that
  // runs out keeps the hint where its last pass stopped. Returns the pages
  // taken; they are given back if too few.
  auto simple_walk = [&](std::vector<PageRun>* taken) {
    uint64_t got = 0;
    for (Seg* s : order) {
      if (s->draining || got == n) continue;
      const auto [lo, hi] = Clip(*s, c);
      if (lo >= hi) continue;
      const uint64_t hint = s->hint;
      auto walk = [&](uint64_t from, uint64_t to) {
        for (uint64_t p = from; p < to && got < n; ++p) {
          if (s->at(p) != kFree) continue;
          s->at(p) = kUsed;
          taken->push_back({Pfn(p), PageCount(1)});
          ++got;
          s->hint = p + 1;
        }
      };
      walk(std::max(lo, hint), hi);
      if (got == n) break;
      if (hint == s->avail_begin) {
        s->hint = hi;
        continue;
      }
      const uint64_t limit = std::min(hi, hint);
      walk(lo, limit);
      if (got < n) s->hint = limit;
    }
    if (got < n) {
      for (const PageRun& r : *taken) Mark(r.start.value, 1, kFree);
    }
    return got;
  };
  if (auto s = Precheck(c); !s.ok()) {
    // A simple request refused before the walk moves the hints as a walk
    // that finds too few pages would: walk, give everything back, and undo
    // the hints if it would have found enough. The seed does not walk when
    // nothing at all is free.
    uint64_t free = 0;
    for (Seg* sg : order) {
      if (!sg->draining)
        free += std::count(sg->state.begin(), sg->state.end(), kFree);
    }
    if (c.Simple() && free > 0) {
      std::vector<std::pair<Seg*, uint64_t>> hints;
      for (Seg* sg : order) hints.emplace_back(sg, sg->hint);
      std::vector<PageRun> taken;
      if (simple_walk(&taken) == n) {
        for (const PageRun& r : taken) Mark(r.start.value, 1, kFree);
        for (auto& [sg, h] : hints) sg->hint = h;
      }
    }
    return s;
  }

  if (c.Simple()) {
    std::vector<PageRun> taken;
    if (simple_walk(&taken) < n) return Exhausted(FailReason::kNoSpace);
    return Record(taken, Path::kSimple, c.preemptible);
  }

  // Freelist by freelist: one run in this freelist's segments, in order
  // (FindSingle); then, if the request accepts several, runs from the
  // freelists up to this one (ChooseMulti).
  std::vector<uint32_t> lists;
  for (Seg* s : order) {
    if (lists.empty() || lists.back() != s->freelist)
      lists.push_back(s->freelist);
  }
  for (uint32_t list : lists) {
    for (Seg* s : order) {
      if (s->freelist != list || s->draining) continue;
      if (const std::optional<uint64_t> found = FindSingle(*s, c)) {
        s->hint = *found + n;
        return Record({{Pfn(*found), c.pages}}, Path::kContig, c.preemptible);
      }
    }
    if (c.max_runs < 2) continue;
    if (auto runs = ChooseMulti(order, list, c)) {
      return Record(*runs, Path::kMulti, c.preemptible);
    }
  }
  return Exhausted(FailReason::kNoSpace);
}

absl::StatusOr<ReclaimPlan> ReferencePool::PlanReclaim(const Request& req) {
  auto cor = Normalize(req, opts_.page_size);
  if (!cor.ok())
    return FailWith(cor.status().code(), FailReason::kInvalid, "model");
  const Constraints c = *cor;
  const uint64_t n = c.pages.value;
  bool any_preemptible = false;
  for (const auto& [id, a] : allocs_) any_preemptible |= a.preemptible;
  if (!any_preemptible) return Exhausted(FailReason::kNoReclaim);
  auto victims_of = [&](uint64_t start) {
    std::vector<AllocationId> v;
    const PageRun w{Pfn(start), c.pages};
    for (const auto& [id, a] : allocs_) {
      for (const PageRun& r : a.runs) {
        if (r.Overlaps(w)) {
          v.push_back(id);
          break;
        }
      }
    }
    return v;
  };
  // Every admissible window of free and preemptible pages, in every
  // segment; its cost is the total size of the allocations it revokes,
  // then their number, then its segment's freelist, then its address.
  bool found = false;
  std::tuple<uint64_t, uint64_t, uint32_t, uint64_t> best{0, 0, 0, 0};
  for (Seg* s : Order()) {
    if (s->draining) continue;
    const auto [lo, hi] = Clip(*s, c);
    for (uint64_t cand = lo; cand + n <= hi; ++cand) {
      if (!c.Admits(cand, n)) continue;
      bool pinned = false;
      for (uint64_t p = cand; p < cand + n; ++p) pinned |= s->at(p) == kUsed;
      if (pinned) continue;
      uint64_t cost = 0;
      const std::vector<AllocationId> victims = victims_of(cand);
      for (AllocationId v : victims) cost += allocs_[v].pages().value;
      const std::tuple<uint64_t, uint64_t, uint32_t, uint64_t> key{
          cost, victims.size(), s->freelist, cand};
      if (!found || key < best) {
        found = true;
        best = key;
      }
    }
  }
  if (!found) return Exhausted(FailReason::kNoReclaim);
  const uint64_t best_cost = std::get<0>(best), best_start = std::get<3>(best);
  ReclaimPlan plan;
  plan.window = {Pfn(best_start), c.pages};
  plan.victims = victims_of(best_start);
  plan.reclaim_pages = PageCount(best_cost);
  uint64_t victim_pages = 0, free = 0;
  for (AllocationId v : plan.victims) victim_pages += allocs_[v].pages().value;
  for (Seg& s : segs_) {
    if (!s.draining) free += std::count(s.state.begin(), s.state.end(), kFree);
  }
  if (!c.privileged && free + victim_pages - n < opts_.reserve_pages.value) {
    return Exhausted(FailReason::kReserve);
  }
  return plan;
}

absl::StatusOr<Allocation> ReferencePool::CommitReclaim(
    const Request& req, const ReclaimPlan& plan) {
  for (AllocationId v : plan.victims) {
    if (auto s = Free(v); !s.ok()) return s;
  }
  return Record({plan.window}, Path::kAggressive, req.preemptible);
}

AllocationId ReferencePool::Claim(const std::vector<PageRun>& runs,
                                  bool preemptible) {
  return Record(runs, Path::kClaim, preemptible).id;
}

void ReferencePool::SetHint(SegmentId id, Pfn hint) {
  for (Seg& s : segs_) {
    if (s.id == id) s.hint = hint.value;
  }
}

absl::Status ReferencePool::Free(AllocationId id) {
  auto it = allocs_.find(id);
  if (it == allocs_.end()) return absl::NotFoundError("model");
  for (const PageRun& r : it->second.runs)
    Mark(r.start.value, r.pages.value, kFree);
  allocs_.erase(it);
  return absl::OkStatus();
}

}  // namespace physpool::pglist::testing
