// The free map of one physseg: one bit per page (1 = free) plus two summary
// trees over its words ("word has a free page", "word has a used page"), so
// that searches skip fully used and fully free stretches 64 pages (and, one
// level up, 4096 pages) at a time. About 1.03 bits of metadata per page.
//
// Indices are page offsets within the segment, [0, size()). The map checks
// nothing about ownership: callers test AllFree/AllUsed before changing a
// range. Not thread-safe.
#ifndef PHYSPOOL_PGLIST_FREE_MAP_H_
#define PHYSPOOL_PGLIST_FREE_MAP_H_

#include <cstddef>
#include <cstdint>
#include <vector>

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

  uint64_t CountFree(uint64_t begin, uint64_t end) const;
  bool AllFree(uint64_t begin, uint64_t end) const {
    return NextUsed(begin, end) == end;
  }
  bool AllUsed(uint64_t begin, uint64_t end) const {
    return NextFree(begin, end) == end;
  }

  // Length of the longest run of free pages. O(words holding a free page).
  uint64_t LargestFreeRun() const;

  size_t MetadataBytes() const;

 private:
  void UpdateSummaries(uint64_t word_index, uint64_t old_word);

  uint64_t pages_;
  uint64_t free_;
  std::vector<uint64_t> words_;  // bit set = page free; padding bits clear
  SummaryTree any_free_;         // words_[w] != 0
  SummaryTree any_used_;         // words_[w] != ~0
};

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_FREE_MAP_H_
