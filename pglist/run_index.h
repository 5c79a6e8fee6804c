// SPDX-License-Identifier: Apache-2.0
// An index of free runs over a free bitmap (bit set = page free): for every
// block of 16 words (1024 pages), and every 16 nodes above that, the length
// of the free run at its start (prefix), at its end (suffix) and the longest
// inside (max). NextRun() uses it to find the first free run of a given
// length in O(16 * levels) steps, however fragmented the map is.
//
// About 24 bytes per 1024 pages (0.19 bits per page). The index does not own
// the bitmap: callers pass the same word array to every call, report changed
// words with MarkDirty() (cheap) and Flush() before a query: a flush
// recomputes each dirty block once, bottom-up, and stops climbing where a
// summary did not change. Not thread-safe.
#ifndef PHYSPOOL_PGLIST_RUN_INDEX_H_
#define PHYSPOOL_PGLIST_RUN_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace physpool::pglist {

class RunIndex {
 public:
  // An index over `words` 64-bit words, all of them zero (used).
  explicit RunIndex(uint64_t words);

  // Words [first_word, last_word] changed.
  void MarkDirty(uint64_t first_word, uint64_t last_word);
  // Words [first_word, last_word] are now all ones (`free`) or all zeros:
  // the blocks they cover entirely are set without reading their words.
  void Fill(uint64_t first_word, uint64_t last_word, bool free);
  size_t pending() const { return pending_; }
  // Brings every summary up to date with `words`.
  void Flush(const std::vector<uint64_t>& words);

  // The first s in [from, limit - n] such that bits [s, s + n) are all set,
  // or `limit` if there is none. REQUIRES: n >= 1, limit <= words * 64,
  // pending() == 0.
  uint64_t NextRun(const std::vector<uint64_t>& words, uint64_t from,
                   uint64_t n, uint64_t limit) const;

  // The longest run of set bits. REQUIRES: pending() == 0.
  uint64_t LongestRun(const std::vector<uint64_t>& words) const;

  size_t MetadataBytes() const;

 private:
  struct Node {
    uint64_t prefix = 0, suffix = 0, max = 0;
  };
  // Every node has 16 children (words, for level 1): a change recomputes
  // 16 children per level.
  static constexpr uint64_t kFanout = 16;
  static constexpr uint64_t kLeafFanout = kFanout;
  static uint64_t Fanout(size_t) { return kFanout; }
  // Node i of level k covers pages [i, i + 1) * Span(k); level 0 is a word.
  static uint64_t Span(size_t level) { return uint64_t{64} << (4 * level); }
  static Node OfWord(uint64_t w);
  Node Get(const std::vector<uint64_t>& words, size_t level, uint64_t i) const;
  // Recomputes node i of `level` >= 1; true if it changed.
  bool Recompute(const std::vector<uint64_t>& words, size_t level, uint64_t i);

  uint64_t words_;
  std::vector<std::vector<Node>> levels_;  // levels_[k - 1] is level k
  // dirty_[k - 1]: nodes of level k to recompute, unsorted.
  std::vector<std::vector<uint64_t>> dirty_;
  size_t pending_ = 0;
};

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_RUN_INDEX_H_
