#include "pglist/reclaim.h"

#include <algorithm>
#include <vector>

namespace physpool::pglist {
namespace {

struct Span {
  uint64_t start, end;
  AllocationId id;
};

// Evaluates the windows of one stretch [a, e) in which every page is free or
// preemptible; `runs` are the preemptible runs in it, ascending.
class Stretch {
 public:
  Stretch(const Constraints& c, uint64_t a, uint64_t e,
          const std::vector<Span>& runs)
      : c_(c), n_(c.pages.value), a_(a), e_(e), runs_(runs) {
    prefix_.push_back(0);
    for (const Span& r : runs_)
      prefix_.push_back(prefix_.back() + r.end - r.start);
  }

  void Search(std::optional<ReclaimWindow>* best) const {
    // The cost is linear and the victim count constant between consecutive
    // edges, so the best start is an admissible start next to one of them.
    std::vector<uint64_t> cands;
    auto add_around = [&](int64_t x) {
      const uint64_t p = static_cast<uint64_t>(std::clamp<int64_t>(
          x, static_cast<int64_t>(a_), static_cast<int64_t>(e_ - n_)));
      for (auto cand :
           {Succ(p), Pred(p), p > a_ ? Pred(p - 1) : std::nullopt}) {
        if (cand) cands.push_back(*cand);
      }
    };
    const int64_t n = static_cast<int64_t>(n_);
    add_around(static_cast<int64_t>(a_));
    add_around(static_cast<int64_t>(e_) - n);
    for (const Span& r : runs_) {
      const int64_t s = static_cast<int64_t>(r.start);
      const int64_t t = static_cast<int64_t>(r.end);
      for (int64_t x : {s - n, s - n + 1, s, t - n, t}) add_around(x);
    }
    std::sort(cands.begin(), cands.end());
    cands.erase(std::unique(cands.begin(), cands.end()), cands.end());
    for (uint64_t cand : cands) {
      const auto [i, j] = Touching(cand);
      ReclaimWindow w{Pfn(cand), Cost(cand, i, j), 0};
      if (*best && w.cost > (*best)->cost) continue;
      std::vector<AllocationId> ids;
      for (size_t k = i; k < j; ++k) ids.push_back(runs_[k].id);
      std::sort(ids.begin(), ids.end());
      w.victims = std::unique(ids.begin(), ids.end()) - ids.begin();
      if (!*best || w.BetterThan(**best)) *best = w;
    }
  }

 private:
  // The first admissible start >= p.
  std::optional<uint64_t> Succ(uint64_t p) const {
    uint64_t cand = c_.AlignUp(p);
    if (c_.CrossesBoundary(cand, n_)) cand = c_.AlignUp(c_.NextCell(cand));
    if (cand + n_ > e_) return std::nullopt;
    return cand;
  }
  // The last admissible start <= p.
  std::optional<uint64_t> Pred(uint64_t p) const {
    p = std::min(p, e_ - n_);
    uint64_t cand = AlignDown(p, c_.align);
    if (cand < a_) return std::nullopt;
    if (c_.CrossesBoundary(cand, n_)) {
      const uint64_t cell = AlignDown(cand + n_ - 1, c_.boundary);
      if (cell < n_) return std::nullopt;
      cand = AlignDown(cell - n_, c_.align);
      if (cand < a_) return std::nullopt;
    }
    return cand;
  }
  // The runs [i, j) that meet [cand, cand + n).
  std::pair<size_t, size_t> Touching(uint64_t cand) const {
    auto first =
        std::partition_point(runs_.begin(), runs_.end(),
                             [&](const Span& r) { return r.end <= cand; });
    auto last = std::partition_point(
        first, runs_.end(), [&](const Span& r) { return r.start < cand + n_; });
    return {static_cast<size_t>(first - runs_.begin()),
            static_cast<size_t>(last - runs_.begin())};
  }
  uint64_t Cost(uint64_t cand, size_t i, size_t j) const {
    if (i >= j) return 0;
    uint64_t sum = prefix_[j] - prefix_[i];
    if (runs_[i].start < cand) sum -= cand - runs_[i].start;
    if (runs_[j - 1].end > cand + n_) sum -= runs_[j - 1].end - (cand + n_);
    return sum;
  }

  const Constraints& c_;
  const uint64_t n_, a_, e_;
  const std::vector<Span>& runs_;
  std::vector<uint64_t> prefix_;
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
                it->second.id};
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
    if (e - pos >= n) Stretch(c, pos, e, runs).Search(&best);
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
