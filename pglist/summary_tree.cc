// SPDX-License-Identifier: Apache-2.0
#include "pglist/summary_tree.h"

namespace physpool::pglist {

SummaryTree::SummaryTree(uint64_t bits) {
  uint64_t words = (bits + 63) / 64;
  if (words == 0) words = 1;
  for (;;) {
    levels_.emplace_back(words, 0);
    if (words == 1) break;
    words = (words + 63) / 64;
  }
}

void SummaryTree::Set(uint64_t i) {
  for (auto& level : levels_) {
    uint64_t& w = level[i >> 6];
    const bool was_zero = w == 0;
    w |= uint64_t{1} << (i & 63);
    if (!was_zero) return;
    i >>= 6;
  }
}

void SummaryTree::Clear(uint64_t i) {
  for (auto& level : levels_) {
    uint64_t& w = level[i >> 6];
    w &= ~(uint64_t{1} << (i & 63));
    if (w != 0) return;
    i >>= 6;
  }
}

void SummaryTree::Fill(uint64_t lo, uint64_t hi, bool set) {
  if (lo >= hi) return;
  uint64_t first = lo, last = hi - 1;
  for (uint64_t w = first >> 6; w <= last >> 6; ++w) {
    const uint64_t from = w == first >> 6 ? first & 63 : 0;
    const uint64_t to = w == last >> 6 ? last & 63 : 63;
    const uint64_t mask = (~uint64_t{0} >> (63 - to)) & (~uint64_t{0} << from);
    levels_[0][w] = set ? levels_[0][w] | mask : levels_[0][w] & ~mask;
  }
  // Bit w of level k + 1 says whether word w of level k is non-zero:
  // recompute the bits of the words touched, level by level.
  for (size_t k = 0; k + 1 < levels_.size(); ++k) {
    first >>= 6;
    last >>= 6;
    for (uint64_t w = first; w <= last; ++w) {
      uint64_t& up = levels_[k + 1][w >> 6];
      const uint64_t bit = uint64_t{1} << (w & 63);
      up = levels_[k][w] != 0 ? up | bit : up & ~bit;
    }
  }
}

bool SummaryTree::Test(uint64_t i) const {
  return (levels_[0][i >> 6] >> (i & 63)) & 1;
}

uint64_t SummaryTree::Next(uint64_t i) const {
  size_t k = 0;
  while (k < levels_.size()) {
    const uint64_t w = i >> 6;
    if (w >= levels_[k].size()) return kNone;
    const uint64_t bits = levels_[k][w] & (~uint64_t{0} << (i & 63));
    if (bits != 0) {
      i = (w << 6) | static_cast<uint64_t>(__builtin_ctzll(bits));
      while (k > 0) {
        --k;
        i = (i << 6) | static_cast<uint64_t>(__builtin_ctzll(levels_[k][i]));
      }
      return i;
    }
    i = w + 1;  // the next word of this level is bit w+1 of the level above
    ++k;
  }
  return kNone;
}

size_t SummaryTree::MetadataBytes() const {
  size_t bytes = 0;
  for (const auto& level : levels_) bytes += level.size() * sizeof(uint64_t);
  return bytes;
}

}  // namespace physpool::pglist
