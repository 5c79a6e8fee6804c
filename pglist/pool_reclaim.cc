// SPDX-License-Identifier: Apache-2.0
// The aggressive path: Pool::PlanReclaim and Pool::CommitReclaim (pool.h).
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "pglist/pool.h"

namespace physpool::pglist {

// --- The aggressive path ----------------------------------------------------

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

}  // namespace physpool::pglist
