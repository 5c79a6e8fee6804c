// SPDX-License-Identifier: Apache-2.0
#include "pglist/run_index.h"

#include <algorithm>

namespace physpool::pglist {
namespace {

constexpr uint64_t kAll = ~uint64_t{0};

// The longest run of set bits; one step per run. REQUIRES: x != ~0.
uint64_t LongestOnes(uint64_t x) {
  uint64_t best = 0;
  while (x != 0) {
    x >>= __builtin_ctzll(x);
    const uint64_t run = static_cast<uint64_t>(__builtin_ctzll(~x));
    best = std::max(best, run);
    x >>= run;  // run < 64: the top bit of ~x is set after the first shift
  }
  return best;
}

}  // namespace

RunIndex::RunIndex(uint64_t words) : words_(words) {
  uint64_t nodes = words;
  do {
    const uint64_t fanout = Fanout(levels_.size() + 1);
    nodes = (nodes + fanout - 1) / fanout;
    levels_.emplace_back(nodes);
  } while (nodes > 1);
  dirty_.resize(levels_.size());
}

RunIndex::Node RunIndex::OfWord(uint64_t w) {
  if (w == kAll) return {64, 64, 64};
  if (w == 0) return {0, 0, 0};
  return {static_cast<uint64_t>(__builtin_ctzll(~w)),
          static_cast<uint64_t>(__builtin_clzll(~w)), LongestOnes(w)};
}

RunIndex::Node RunIndex::Get(const std::vector<uint64_t>& words, size_t level,
                             uint64_t i) const {
  if (level == 0) return i < words_ ? OfWord(words[i]) : Node{};
  const auto& nodes = levels_[level - 1];
  return i < nodes.size() ? nodes[i] : Node{};
}

bool RunIndex::Recompute(const std::vector<uint64_t>& words, size_t level,
                         uint64_t i) {
  // Folds the children left to right: the prefix grows while every child so
  // far is free; the suffix restarts at each child that is not all free.
  Node acc;
  bool all_free = true;
  auto fold = [&](const Node& n, uint64_t child_span) {
    acc.max = std::max({acc.max, n.max, acc.suffix + n.prefix});
    const bool full = n.prefix == child_span;
    if (all_free) acc.prefix += n.prefix;
    acc.suffix = full ? acc.suffix + child_span : n.suffix;
    all_free = all_free && full;
  };
  const uint64_t fanout = Fanout(level);
  const uint64_t first = i * fanout;
  if (level == 1) {
    const uint64_t last = std::min(first + fanout, words_);
    for (uint64_t c = first; c < last; ++c) {
      const uint64_t w = words[c];
      if (w == kAll) {
        fold({64, 64, 64}, 64);
      } else if (w == 0) {
        fold({0, 0, 0}, 64);
      } else {
        fold(OfWord(w), 64);
      }
    }
  } else {
    const auto& children = levels_[level - 2];
    const uint64_t last = std::min<uint64_t>(first + fanout, children.size());
    const uint64_t span = Span(level - 1);
    for (uint64_t c = first; c < last; ++c) fold(children[c], span);
  }
  // Missing children (past the end of the map) are used: nothing to fold.
  Node& old = levels_[level - 1][i];
  const bool changed = old.prefix != acc.prefix || old.suffix != acc.suffix ||
                       old.max != acc.max;
  old = acc;
  return changed;
}

void RunIndex::MarkDirty(uint64_t first_word, uint64_t last_word) {
  auto& d = dirty_[0];
  for (uint64_t b = first_word / kLeafFanout; b <= last_word / kLeafFanout;
       ++b) {
    if (d.empty() || d.back() != b) {
      d.push_back(b);
      ++pending_;
    }
  }
}

void RunIndex::Fill(uint64_t first_word, uint64_t last_word, bool free) {
  const uint64_t span = Span(1);
  const Node full = free ? Node{span, span, span} : Node{};
  for (uint64_t b = first_word / kLeafFanout; b <= last_word / kLeafFanout;
       ++b) {
    const uint64_t lo = b * kLeafFanout, hi = lo + kLeafFanout - 1;
    if (lo < first_word || hi > last_word || hi >= words_) {
      MarkDirty(std::max(lo, first_word), std::min(hi, last_word));
      continue;
    }
    levels_[0][b] = full;
    if (levels_.size() > 1) {
      auto& up = dirty_[1];
      if (up.empty() || up.back() != b / kFanout) {
        up.push_back(b / kFanout);
        ++pending_;
      }
    }
  }
}

void RunIndex::Flush(const std::vector<uint64_t>& words) {
  for (size_t level = 1; level <= levels_.size(); ++level) {
    auto& nodes = dirty_[level - 1];
    std::sort(nodes.begin(), nodes.end());
    nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
    for (uint64_t i : nodes) {
      if (Recompute(words, level, i) && level < levels_.size()) {
        auto& up = dirty_[level];
        const uint64_t parent = i / Fanout(level + 1);
        if (up.empty() || up.back() != parent) up.push_back(parent);
      }
    }
    nodes.clear();
  }
  pending_ = 0;
}

uint64_t RunIndex::NextRun(const std::vector<uint64_t>& words, uint64_t from,
                           uint64_t n, uint64_t limit) const {
  if (from >= limit || limit - from < n) return limit;
  // Walk right from `from`, over the largest nodes that start at `pos` and
  // end by `limit`, carrying the length of the free run that ends at pos.
  uint64_t pos = from & ~uint64_t{63};
  uint64_t carry = 0;
  while (pos < limit) {
    // The biggest aligned node at pos inside [pos, limit).
    size_t level = 0;
    while (level < levels_.size() && pos >= from &&
           pos % Span(level + 1) == 0 && pos + Span(level + 1) <= limit) {
      ++level;
    }
    for (;;) {
      const uint64_t span = Span(level);
      if (level == 0) {
        // One word, with the bits before `from` and from `limit` on cleared.
        uint64_t w = words[pos / 64];
        if (pos < from) w &= kAll << (from - pos);
        if (limit - pos < 64) w &= (uint64_t{1} << (limit - pos)) - 1;
        const Node nd = OfWord(w);
        if (carry + nd.prefix >= n) return pos - carry;
        if (nd.max >= n) {
          // Starts of runs of n set bits: AND of n shifted copies.
          uint64_t starts = w;
          for (uint64_t k = 1; k < n && starts != 0; ++k) starts &= w >> k;
          return pos + static_cast<uint64_t>(__builtin_ctzll(starts));
        }
        carry = nd.prefix == 64 ? carry + 64 : nd.suffix;
        pos += 64;
        break;
      }
      const Node nd = Get(words, level, pos / span);
      if (carry + nd.prefix >= n) return pos - carry;
      if (nd.max >= n) {
        --level;  // the run is inside: look at the children
        continue;
      }
      carry = nd.prefix == span ? carry + span : nd.suffix;
      pos += span;
      break;
    }
  }
  return limit;
}

uint64_t RunIndex::LongestRun(const std::vector<uint64_t>& words) const {
  return Get(words, levels_.size(), 0).max;
}

size_t RunIndex::MetadataBytes() const {
  size_t b = 0;
  for (const auto& l : levels_) b += l.size() * sizeof(Node);
  return b;
}

}  // namespace physpool::pglist
