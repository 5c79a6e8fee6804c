// SPDX-License-Identifier: Apache-2.0
// The free map of one physseg: one bit per page (1 = free) plus two summary
// trees over its words ("word has a free page", "word has a used page"), so
// that searches skip fully used and fully free stretches 64 pages (and, one
// level up, 4096 pages) at a time, and a run index that finds the first free
// run of a given length. About 1.22 bits of metadata per page.
//
// Indices are page offsets within the segment, [0, size()). The map checks
// nothing about ownership: callers test AllFree/AllUsed before changing a
// range. Not thread-safe.
#ifndef PHYSPOOL_PGLIST_FREE_MAP_H_
#define PHYSPOOL_PGLIST_FREE_MAP_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pglist/run_index.h"
#include "pglist/summary_tree.h"

namespace physpool::pglist {

class FreeMap {
 public:
  // A map of `pages` pages, all free.
  explicit FreeMap(uint64_t pages);

  uint64_t size() const { return pages_; }
  uint64_t free_count() const { return free_; }
  bool IsFree(uint64_t i) const { return (words_[i >> 6] >> (i & 63)) & 1; }

  // REQUIRES: begin <= end <= size(). MarkUsed requires AllFree(begin, end),
  // MarkFree requires AllUsed(begin, end) (free counts rely on it).
  void MarkUsed(uint64_t begin, uint64_t end);
  void MarkFree(uint64_t begin, uint64_t end);

  // The first free (used) page in [from, limit), or `limit` if none.
  // REQUIRES: limit <= size().
  uint64_t NextFree(uint64_t from, uint64_t limit) const;
  uint64_t NextUsed(uint64_t from, uint64_t limit) const;

  // The first s in [from, limit - n] with pages [s, s + n) all free, or
  // `limit`. REQUIRES: n >= 1, limit <= size().
  uint64_t NextRun(uint64_t from, uint64_t n, uint64_t limit) const {
    FlushRuns();
    return runs_.NextRun(words_, from, n, limit);
  }

  uint64_t CountFree(uint64_t begin, uint64_t end) const;
  bool AllFree(uint64_t begin, uint64_t end) const {
    return NextUsed(begin, end) == end;
  }
  bool AllUsed(uint64_t begin, uint64_t end) const {
    return NextFree(begin, end) == end;
  }

  // Updates the run index now for the changes made so far (queries do it
  // anyway; calling it at the end of each operation charges the work to the
  // operation that caused it).
  void Sync() { FlushRuns(); }

  // Length of the longest run of free pages. O(1).
  uint64_t LargestFreeRun() const {
    FlushRuns();
    return runs_.LongestRun(words_);
  }

  size_t MetadataBytes() const;

 private:
  void UpdateSummaries(uint64_t word_index, uint64_t old_word);
  // Brings the run index up to date (it is updated lazily, before a query).
  void FlushRuns() const {
    if (runs_.pending() != 0) runs_.Flush(words_);
  }
  void Mark(uint64_t begin, uint64_t end, bool free);

  uint64_t pages_;
  uint64_t free_;
  std::vector<uint64_t> words_;  // bit set = page free; padding bits clear
  SummaryTree any_free_;         // words_[w] != 0
  SummaryTree any_used_;         // words_[w] != ~0
  mutable RunIndex runs_;        // flushed lazily by the const queries
};

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_FREE_MAP_H_
