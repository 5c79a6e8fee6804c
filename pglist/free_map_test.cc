// SPDX-License-Identifier: Apache-2.0
#include "pglist/free_map.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "pglist/summary_tree.h"

namespace physpool::pglist {
namespace {

TEST(SummaryTreeTest, NextFindsAcrossLevels) {
  SummaryTree t(1 << 20);
  EXPECT_EQ(t.Next(0), SummaryTree::kNone);
  t.Set(5);
  t.Set(70000);
  t.Set((1 << 20) - 1);
  EXPECT_EQ(t.Next(0), 5u);
  EXPECT_EQ(t.Next(5), 5u);
  EXPECT_EQ(t.Next(6), 70000u);
  EXPECT_EQ(t.Next(70001), (1u << 20) - 1);
  t.Clear(70000);
  EXPECT_EQ(t.Next(6), (1u << 20) - 1);
  t.Clear((1 << 20) - 1);
  EXPECT_EQ(t.Next(6), SummaryTree::kNone);
  EXPECT_EQ(t.Next(1 << 20), SummaryTree::kNone);
}

TEST(SummaryTreeTest, RangesMatchNaive) {
  std::mt19937_64 rng(3);
  for (int round = 0; round < 50; ++round) {
    const uint64_t n = 1 + rng() % 300000;
    SummaryTree t(n);
    std::vector<bool> naive(n, false);
    for (int op = 0; op < 40; ++op) {
      uint64_t a = rng() % n, b = rng() % n;
      if (a > b) std::swap(a, b);
      ++b;
      const bool set = rng() % 2;
      set ? t.SetRange(a, b) : t.ClearRange(a, b);
      for (uint64_t i = a; i < b; ++i) naive[i] = set;
      for (int q = 0; q < 20; ++q) {
        const uint64_t from = rng() % n;
        uint64_t want = from;
        while (want < n && !naive[want]) ++want;
        ASSERT_EQ(t.Next(from), want == n ? SummaryTree::kNone : want);
      }
    }
  }
}

TEST(FreeMapTest, StartsFreeAndTracksCounts) {
  FreeMap m(130);
  EXPECT_EQ(m.free_count(), 130u);
  EXPECT_EQ(m.NextUsed(0, 130), 130u);
  m.MarkUsed(60, 70);
  EXPECT_EQ(m.free_count(), 120u);
  EXPECT_EQ(m.NextUsed(0, 130), 60u);
  EXPECT_EQ(m.NextFree(60, 130), 70u);
  EXPECT_EQ(m.NextUsed(0, 50), 50u);  // limited
  EXPECT_EQ(m.CountFree(0, 130), 120u);
  EXPECT_TRUE(m.AllUsed(60, 70));
  EXPECT_FALSE(m.AllUsed(59, 70));
  EXPECT_EQ(m.LargestFreeRun(), 60u);  // [0, 60) and [70, 130)
  m.MarkFree(60, 70);
  EXPECT_EQ(m.LargestFreeRun(), 130u);
}

// Every query against a page-by-page reading of the same map.
TEST(FreeMapTest, MatchesNaiveOnRandomPatterns) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    const uint64_t n = 1 + (round % 4 == 0 ? rng() % 300000 : rng() % 5000);
    FreeMap m(n);
    std::vector<bool> naive(n, true);
    for (int op = 0; op < (n > 5000 ? 8 : 50); ++op) {
      uint64_t a = rng() % n, b = rng() % n;
      if (a > b) std::swap(a, b);
      ++b;
      if (rng() % 2) {
        // Mark the free stretches of [a, b) used.
        for (uint64_t i = a; i < b;) {
          const uint64_t f = m.NextFree(i, b);
          const uint64_t u = m.NextUsed(f, b);
          m.MarkUsed(f, u);
          for (uint64_t k = f; k < u; ++k) naive[k] = false;
          i = u;
        }
      } else {
        for (uint64_t i = a; i < b;) {
          const uint64_t u = m.NextUsed(i, b);
          const uint64_t f = m.NextFree(u, b);
          m.MarkFree(u, f);
          for (uint64_t k = u; k < f; ++k) naive[k] = true;
          i = f;
        }
      }
      uint64_t free = 0, best = 0, run = 0;
      for (uint64_t i = 0; i < n; ++i) {
        ASSERT_EQ(m.IsFree(i), naive[i]) << i;
        free += naive[i];
        run = naive[i] ? run + 1 : 0;
        best = std::max(best, run);
      }
      ASSERT_EQ(m.free_count(), free);
      ASSERT_EQ(m.LargestFreeRun(), best);
      const uint64_t from = rng() % n;
      uint64_t nf = from, nu = from;
      while (nf < n && !naive[nf]) ++nf;
      while (nu < n && naive[nu]) ++nu;
      ASSERT_EQ(m.NextFree(from, n), nf);
      ASSERT_EQ(m.NextUsed(from, n), nu);
      // NextRun: the first start of `len` free pages in [from, limit).
      const uint64_t limit = from + rng() % (n - from + 1);
      const uint64_t len = 1 + (rng() % 2 ? rng() % 8 : rng() % 300);
      uint64_t want = limit;
      for (uint64_t s = from; s + len <= limit && want == limit; ++s) {
        uint64_t k = 0;
        while (k < len && naive[s + k]) ++k;
        if (k == len) want = s;
      }
      ASSERT_EQ(m.NextRun(from, len, limit), want)
          << "from " << from << " len " << len << " limit " << limit << " n "
          << n;
    }
  }
}

TEST(FreeMapTest, AtMostTwoBitsPerPage) {
  for (uint64_t pages : {uint64_t{64}, uint64_t{1} << 18, uint64_t{1} << 26}) {
    FreeMap m(pages);
    EXPECT_LE(m.MetadataBytes() * 8, 2 * pages + 3 * 64 * 8) << pages;
  }
  FreeMap big(uint64_t{1} << 26);
  EXPECT_LT(static_cast<double>(big.MetadataBytes() * 8) / (uint64_t{1} << 26),
            1.25);
}

}  // namespace
}  // namespace physpool::pglist
