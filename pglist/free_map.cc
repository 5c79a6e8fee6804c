// SPDX-License-Identifier: Apache-2.0
#include "pglist/free_map.h"

#include <algorithm>

namespace physpool::pglist {
namespace {

constexpr uint64_t kAll = ~uint64_t{0};

// Bits [lo, hi) of a word, 0 <= lo < hi <= 64.
uint64_t Mask(uint64_t lo, uint64_t hi) {
  const uint64_t upper = hi == 64 ? kAll : (uint64_t{1} << hi) - 1;
  return upper & (kAll << lo);
}

// Calls f(word_index, mask) for each word that [begin, end) touches.
template <typename F>
void ForEachWord(uint64_t begin, uint64_t end, F f) {
  while (begin < end) {
    const uint64_t w = begin >> 6;
    const uint64_t hi = std::min<uint64_t>(end - (w << 6), 64);
    f(w, Mask(begin & 63, hi));
    begin = (w + 1) << 6;
  }
}

}  // namespace

FreeMap::FreeMap(uint64_t pages)
    : pages_(pages),
      free_(pages),
      words_((pages + 63) / 64, kAll),
      any_free_(words_.size()),
      any_used_(words_.size()),
      runs_(words_.size()) {
  if (pages_ % 64 != 0) words_.back() = Mask(0, pages_ % 64);
  for (uint64_t w = 0; w < words_.size(); ++w) {
    if (words_[w] != 0) any_free_.Set(w);
    if (words_[w] != kAll) any_used_.Set(w);
  }
  if (!words_.empty()) runs_.MarkDirty(0, words_.size() - 1);
  runs_.Flush(words_);
}

void FreeMap::UpdateSummaries(uint64_t w, uint64_t old_word) {
  const uint64_t now = words_[w];
  if ((old_word != 0) != (now != 0)) {
    now != 0 ? any_free_.Set(w) : any_free_.Clear(w);
  }
  if ((old_word != kAll) != (now != kAll)) {
    now != kAll ? any_used_.Set(w) : any_used_.Clear(w);
  }
}

void FreeMap::MarkUsed(uint64_t begin, uint64_t end) {
  Mark(begin, end, false);
}

void FreeMap::MarkFree(uint64_t begin, uint64_t end) { Mark(begin, end, true); }

void FreeMap::Mark(uint64_t begin, uint64_t end, bool free) {
  if (begin >= end) return;
  free ? free_ += end - begin : free_ -= end - begin;
  // Partial words one by one; whole words in bulk.
  uint64_t first_full = (begin + 63) / 64, end_full = end / 64;
  if (first_full >= end_full) first_full = end_full = begin / 64;
  auto one = [&](uint64_t w, uint64_t mask) {
    const uint64_t old = words_[w];
    words_[w] = free ? old | mask : old & ~mask;
    UpdateSummaries(w, old);
  };
  ForEachWord(begin, std::min(end, first_full * 64), one);
  if (first_full < end_full) {
    std::fill(words_.begin() + first_full, words_.begin() + end_full,
              free ? kAll : 0);
    if (free) {
      any_free_.SetRange(first_full, end_full);
      any_used_.ClearRange(first_full, end_full);
    } else {
      any_free_.ClearRange(first_full, end_full);
      any_used_.SetRange(first_full, end_full);
    }
    runs_.Fill(first_full, end_full - 1, free);
  }
  ForEachWord(std::max(begin, end_full * 64), end, one);
  runs_.MarkDirty(begin / 64, begin / 64);
  runs_.MarkDirty((end - 1) / 64, (end - 1) / 64);
  // Bound the pending work between queries.
  if (runs_.pending() > (1u << 16)) runs_.Flush(words_);
}

uint64_t FreeMap::NextFree(uint64_t from, uint64_t limit) const {
  if (from >= limit) return limit;
  uint64_t w = from >> 6;
  uint64_t bits = words_[w] & (kAll << (from & 63));
  if (bits == 0) {
    w = any_free_.Next(w + 1);
    if (w == SummaryTree::kNone || (w << 6) >= limit) return limit;
    bits = words_[w];
  }
  return std::min(limit,
                  (w << 6) | static_cast<uint64_t>(__builtin_ctzll(bits)));
}

uint64_t FreeMap::NextUsed(uint64_t from, uint64_t limit) const {
  if (from >= limit) return limit;
  uint64_t w = from >> 6;
  uint64_t bits = ~words_[w] & (kAll << (from & 63));
  if (bits == 0) {
    w = any_used_.Next(w + 1);
    if (w == SummaryTree::kNone || (w << 6) >= limit) return limit;
    bits = ~words_[w];
  }
  return std::min(limit,
                  (w << 6) | static_cast<uint64_t>(__builtin_ctzll(bits)));
}

uint64_t FreeMap::CountFree(uint64_t begin, uint64_t end) const {
  uint64_t n = 0;
  ForEachWord(begin, end, [&](uint64_t w, uint64_t mask) {
    n += static_cast<uint64_t>(__builtin_popcountll(words_[w] & mask));
  });
  return n;
}

size_t FreeMap::MetadataBytes() const {
  return words_.size() * sizeof(uint64_t) + any_free_.MetadataBytes() +
         any_used_.MetadataBytes() + runs_.MetadataBytes();
}

}  // namespace physpool::pglist
