// SPDX-License-Identifier: Apache-2.0
#include "pglist/reclaim.h"

#include <algorithm>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace physpool::pglist {
namespace {

struct Span {
  uint64_t start, end;
  AllocationId id;
  uint64_t alloc_pages;
};

// Evaluates the windows of one stretch [a, e) in which every page is free or
// preemptible; `runs` are the preemptible runs in it, ascending.
class Stretch {
 public:
  Stretch(const Constraints& c, uint64_t a, uint64_t e,
          const std::vector<Span>& runs, uint32_t freelist)
      : c_(c),
        n_(c.pages.value),
        a_(a),
        e_(e),
        runs_(runs),
        freelist_(freelist) {}

  void Search(std::optional<ReclaimWindow>* best) const {
    // The allocations a window touches are constant between edges (a run
    // leaves when the start reaches its end, enters when the window's end
    // passes its start), so the first admissible start after each edge is
    // the cheapest and lowest of its interval.
    std::vector<uint64_t> cands;
    auto add_from = [&](uint64_t x) {
      if (x < a_) x = a_;
      if (x > e_ - n_) return;
      if (auto s = Succ(x)) cands.push_back(*s);
    };
    add_from(a_);
    for (const Span& r : runs_) {
      add_from(r.end);
      add_from(r.start + 1 >= n_ ? r.start + 1 - n_ : a_);
    }
    std::sort(cands.begin(), cands.end());
    cands.erase(std::unique(cands.begin(), cands.end()), cands.end());
    // Slide over the runs: [i, j) meet [cand, cand + n).
    absl::flat_hash_map<AllocationId, uint32_t> touched;
    uint64_t cost = 0, victims = 0;
    size_t i = 0, j = 0;
    for (uint64_t cand : cands) {
      for (; j < runs_.size() && runs_[j].start < cand + n_; ++j) {
        if (touched[runs_[j].id]++ == 0) {
          cost += runs_[j].alloc_pages;
          ++victims;
        }
      }
      for (; i < j && runs_[i].end <= cand; ++i) {
        if (--touched[runs_[i].id] == 0) {
          cost -= runs_[i].alloc_pages;
          --victims;
        }
      }
      const ReclaimWindow w{Pfn(cand), cost, victims, freelist_};
      if (!*best || w.BetterThan(**best)) *best = w;
    }
  }

 private:
  // The first admissible start >= p whose window ends inside the stretch.
  std::optional<uint64_t> Succ(uint64_t p) const {
    uint64_t cand = c_.AlignUp(p);
    if (c_.CrossesBoundary(cand, n_)) cand = c_.AlignUp(c_.NextCell(cand));
    if (cand + n_ > e_) return std::nullopt;
    return cand;
  }

  const Constraints& c_;
  const uint64_t n_, a_, e_;
  const std::vector<Span>& runs_;
  const uint32_t freelist_;
};

}  // namespace

std::optional<ReclaimWindow> FindReclaimWindow(const PhysSeg& seg,
                                               const PreemptMap& preempt,
                                               const Constraints& c) {
  const auto [lo, hi] = seg.Clip(c);
  const uint64_t n = c.pages.value;
  std::optional<ReclaimWindow> best;
  if (lo >= hi || hi - lo < n) return best;
  const FreeMap& map = seg.map();
  const uint64_t base = seg.base().value;
  // The preemptible run holding used page u, if any.
  auto run_at = [&](uint64_t u) -> std::optional<Span> {
    auto it = preempt.upper_bound(Pfn(u));
    if (it == preempt.begin()) return std::nullopt;
    --it;
    if (it->first.value + it->second.pages.value <= u) return std::nullopt;
    return Span{it->first.value, it->first.value + it->second.pages.value,
                it->second.id, it->second.alloc_pages.value};
  };
  std::vector<Span> runs;
  uint64_t pos = lo;
  while (pos < hi) {
    // Grow a stretch from pos over free pages and preemptible runs.
    runs.clear();
    uint64_t e = pos;
    for (;;) {
      const uint64_t u = base + map.NextUsed(e - base, hi - base);
      if (u >= hi) {
        e = hi;
        break;
      }
      auto r = run_at(u);
      if (!r) {
        e = u;  // a used page that may not be reclaimed
        break;
      }
      r->start = std::max(r->start, pos);
      r->end = std::min(r->end, hi);
      runs.push_back(*r);
      e = r->end;
    }
    if (e - pos >= n)
      Stretch(c, pos, e, runs, seg.spec().freelist).Search(&best);
    if (e >= hi) break;
    // Resume at the next page that is free or starts a preemptible run.
    const uint64_t next_free = base + map.NextFree(e - base, hi - base);
    auto it = preempt.lower_bound(Pfn(e));
    const uint64_t next_run =
        it != preempt.end() ? std::min(it->first.value, hi) : hi;
    pos = std::min(next_free, next_run);
  }
  return best;
}

}  // namespace physpool::pglist
