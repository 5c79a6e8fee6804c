// SPDX-License-Identifier: Apache-2.0
// A set of bit positions with fast "next set bit at or after i".
//
// Level 0 holds one bit per position; each higher level holds one bit per
// word of the level below ("that word is non-zero"), up to a single word, so
// Next() costs O(log64 n) word reads whatever the distance to the answer.
// Memory: about n/64 * (1 + 1/64 + ...) words. Not thread-safe.
#ifndef PHYSPOOL_PGLIST_SUMMARY_TREE_H_
#define PHYSPOOL_PGLIST_SUMMARY_TREE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace physpool::pglist {

class SummaryTree {
 public:
  static constexpr uint64_t kNone = ~uint64_t{0};

  // A tree over `bits` positions, all clear.
  explicit SummaryTree(uint64_t bits);

  void Set(uint64_t i);
  void Clear(uint64_t i);
  // Sets (clears) positions [lo, hi). O((hi - lo) / 64 + levels).
  void SetRange(uint64_t lo, uint64_t hi) { Fill(lo, hi, true); }
  void ClearRange(uint64_t lo, uint64_t hi) { Fill(lo, hi, false); }
  bool Test(uint64_t i) const;

  // The first set position >= i, or kNone.
  uint64_t Next(uint64_t i) const;

  size_t MetadataBytes() const;

 private:
  void Fill(uint64_t lo, uint64_t hi, bool set);

  std::vector<std::vector<uint64_t>>
      levels_;  // levels_[0]: one bit per position
};

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_SUMMARY_TREE_H_
