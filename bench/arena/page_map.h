// SPDX-License-Identifier: Apache-2.0
// The arena benchmark's check that no two live allocations of any of its
// threads share a page: one bit per page of [lo, hi), set while a live
// allocation covers the page. Lock-free: the threads claim and unclaim
// concurrently. Callers pass page-aligned ranges inside [lo, hi).
#ifndef PHYSPOOL_BENCH_ARENA_PAGE_MAP_H_
#define PHYSPOOL_BENCH_ARENA_PAGE_MAP_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "bench/churn.h"

namespace physpool::bench {

class PageMap {
 public:
  static constexpr uint64_t kPage = ChurnRequest::kPage;

  PageMap(uint64_t lo, uint64_t hi)
      : lo_(lo), words_((hi - lo) / kPage / 64 + 1) {}
  // Sets the pages of [a, a + bytes); false if one was set already (an
  // overlap; the rest are set all the same).
  bool Claim(uint64_t a, uint64_t bytes) { return Apply(a, bytes, true); }
  // Clears them; false if one was clear.
  bool Unclaim(uint64_t a, uint64_t bytes) { return Apply(a, bytes, false); }

 private:
  bool Apply(uint64_t a, uint64_t bytes, bool set) {
    uint64_t p = (a - lo_) / kPage;
    const uint64_t end = p + bytes / kPage;
    bool ok = true;
    while (p < end) {
      const uint64_t bit = p % 64, n = std::min<uint64_t>(64 - bit, end - p);
      const uint64_t mask = (n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1)
                            << bit;
      std::atomic<uint64_t>& w = words_[p / 64];
      if (set) {
        ok &= (w.fetch_or(mask, std::memory_order_relaxed) & mask) == 0;
      } else {
        ok &= (w.fetch_and(~mask, std::memory_order_relaxed) & mask) == mask;
      }
      p += n;
    }
    return ok;
  }

  const uint64_t lo_;
  std::vector<std::atomic<uint64_t>> words_;  // value-initialised: zero
};

}  // namespace physpool::bench

#endif  // PHYSPOOL_BENCH_ARENA_PAGE_MAP_H_
