// SPDX-License-Identifier: Apache-2.0
// Histogram and PathTimes (core/histogram.h): a value lands in the first
// bucket whose upper bound it does not exceed (bounds are inclusive, as
// Prometheus' "le"), above the last one in +Inf; counts, sum and count.
#include "server/core/histogram.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace physpool::server {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::UnorderedElementsAre;

TEST(HistogramTest, ANewHistogramHasOneEmptyBucketPerBoundAndInf) {
  Histogram h({1, 2, 5});
  EXPECT_THAT(h.counts, ElementsAre(0, 0, 0, 0));
  EXPECT_EQ(h.count, 0u);
  EXPECT_EQ(h.sum, 0);
}

TEST(HistogramTest, AValueOnABoundCountsInThatBucket) {
  Histogram h({1, 2, 5});
  h.Observe(1);
  h.Observe(2);
  h.Observe(5);
  EXPECT_THAT(h.counts, ElementsAre(1, 1, 1, 0));
}

TEST(HistogramTest, AValueGoesToTheFirstBucketNotBelowIt) {
  Histogram h({1, 2, 5});
  h.Observe(0.5);  // <= 1
  h.Observe(1.5);  // (1, 2]
  h.Observe(4);    // (2, 5]
  h.Observe(4.9);
  EXPECT_THAT(h.counts, ElementsAre(1, 1, 2, 0));
}

TEST(HistogramTest, AValueAboveTheLastBoundGoesToInf) {
  Histogram h({1, 2});
  h.Observe(2.0001);
  h.Observe(1e9);
  EXPECT_THAT(h.counts, ElementsAre(0, 0, 2));
}

TEST(HistogramTest, ValuesBelowTheFirstBoundGoToTheFirstBucket) {
  Histogram h({1, 2});
  h.Observe(0);
  h.Observe(-3);
  EXPECT_THAT(h.counts, ElementsAre(2, 0, 0));
}

TEST(HistogramTest, WithoutBoundsEverythingIsInInf) {
  Histogram h;
  h.Observe(0);
  h.Observe(7);
  EXPECT_THAT(h.counts, ElementsAre(2));
  EXPECT_EQ(h.count, 2u);
}

TEST(HistogramTest, SumAndCountCoverEveryObservation) {
  Histogram h({1});
  for (double v : {0.25, 0.5, 3.0, 10.0}) h.Observe(v);
  EXPECT_EQ(h.count, 4u);
  EXPECT_DOUBLE_EQ(h.sum, 13.75);
  uint64_t in_buckets = 0;
  for (uint64_t c : h.counts) in_buckets += c;
  EXPECT_EQ(in_buckets, h.count) << "the buckets are not cumulative";
}

TEST(HistogramTest, SecondsBucketsAscendFromAMicrosecondToHalfAMinute) {
  const std::vector<double> b = SecondsBuckets();
  ASSERT_EQ(b.size(), 12u);
  EXPECT_EQ(b.front(), 1e-6);
  EXPECT_EQ(b.back(), 30);
  for (size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]) << i;
}

TEST(PathTimesTest, EachPathHasAHistogramOfItsOwnWithSecondsBuckets) {
  PathTimes p;
  p.Observe("simple", 1e-6);
  p.Observe("simple", 2.0);
  p.Observe("contig", 60);
  ASSERT_EQ(p.by_path.size(), 2u);
  const Histogram& simple = p.by_path.at("simple");
  EXPECT_THAT(simple.bounds, ElementsAreArray(SecondsBuckets()));
  EXPECT_EQ(simple.count, 2u);
  EXPECT_DOUBLE_EQ(simple.sum, 2.0 + 1e-6);
  EXPECT_EQ(simple.counts[0], 1u);   // <= 1 us
  EXPECT_EQ(simple.counts[10], 1u);  // (1, 5] s
  const Histogram& contig = p.by_path.at("contig");
  EXPECT_EQ(contig.count, 1u);
  EXPECT_EQ(contig.counts.back(), 1u) << "above 30 s: +Inf";
  std::vector<std::string> paths;
  for (const auto& [path, h] : p.by_path) paths.push_back(path);
  EXPECT_THAT(paths, UnorderedElementsAre("simple", "contig"));
}

}  // namespace
}  // namespace physpool::server
