// SPDX-License-Identifier: Apache-2.0
// The Scrubber (memory/scrubber.h): jobs are offered in the order pushed,
// queued ones before failed ones; a failed job is kept (its pages counted
// as failed and in the backlog) and offered again only from `retry` after
// its failure; Done hands back the job with its continuation.
#include "server/memory/scrubber.h"

#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace physpool::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr absl::Duration kRetry = absl::Seconds(5);
const absl::Time kNow = absl::FromUnixSeconds(1700000000);

ScrubJob Job(uint64_t id, uint64_t start, uint64_t pages) {
  ScrubJob j;
  j.id = id;
  j.runs = {{pglist::Pfn{start}, pglist::PageCount{pages}}};
  return j;
}

std::vector<uint64_t> Starts(const Scrubber& s) {
  std::vector<uint64_t> out;
  s.ForEachRun([&](const pglist::PageRun& r) { out.push_back(r.start.value); });
  return out;
}

TEST(ScrubberTest, JobsAreOfferedInTheOrderPushed) {
  Scrubber s(kRetry);
  s.Push(Job(1, 0, 1));
  s.Push(Job(2, 10, 1));
  s.Push(Job(3, 20, 1));
  std::vector<uint64_t> order;
  while (std::optional<ScrubJob> j = s.Next(kNow)) {
    order.push_back(j->id);
    s.Done(*std::move(j));
  }
  EXPECT_THAT(order, ElementsAre(1, 2, 3));
  EXPECT_FALSE(s.HasWork(kNow));
}

TEST(ScrubberTest, AJobStaysInTheBacklogUntilDone) {
  Scrubber s(kRetry);
  s.Push(Job(1, 0, 4));
  s.Push(Job(2, 10, 2));
  EXPECT_EQ(s.backlog_pages(), 6u);
  std::optional<ScrubJob> j = s.Next(kNow);
  ASSERT_TRUE(j.has_value());
  EXPECT_EQ(s.backlog_pages(), 6u) << "being zeroed still counts";
  EXPECT_THAT(Starts(s), ElementsAre(10, 0)) << "queued, then in progress";
  s.Done(*std::move(j));
  EXPECT_EQ(s.backlog_pages(), 2u);
  EXPECT_THAT(Starts(s), ElementsAre(10));
}

TEST(ScrubberTest, DoneHandsBackTheJobWithItsContinuation) {
  Scrubber s(kRetry);
  ScrubJob pushed = Job(7, 0, 1);
  int ran = 0;
  pushed.then = [&](Turn&) { ++ran; };
  s.Push(std::move(pushed));
  std::optional<ScrubJob> j = s.Next(kNow);
  ASSERT_TRUE(j.has_value());
  ScrubJob done = s.Done(*std::move(j));
  EXPECT_EQ(done.id, 7u);
  ASSERT_TRUE(done.then != nullptr);
  EXPECT_EQ(ran, 0) << "the scrubber never runs it itself";
}

TEST(ScrubberTest, AFailedJobIsKeptAndOfferedAgainOnlyAfterRetry) {
  Scrubber s(kRetry);
  s.Push(Job(1, 0, 3));
  std::optional<ScrubJob> j = s.Next(kNow);
  ASSERT_TRUE(j.has_value());
  s.Failed(*std::move(j), kNow);
  EXPECT_EQ(s.errors(), 1u);
  EXPECT_EQ(s.failed_pages(), 3u);
  EXPECT_EQ(s.backlog_pages(), 3u) << "its pages stay out of the pool";
  EXPECT_THAT(Starts(s), ElementsAre(0));
  EXPECT_EQ(s.NextRetry(), kNow + kRetry);

  const absl::Time early = kNow + kRetry - absl::Milliseconds(1);
  EXPECT_FALSE(s.HasWork(early));
  EXPECT_FALSE(s.Next(early).has_value());

  EXPECT_TRUE(s.HasWork(kNow + kRetry));
  std::optional<ScrubJob> again = s.Next(kNow + kRetry);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->id, 1u);
  EXPECT_EQ(s.failed_pages(), 0u);
  EXPECT_FALSE(s.NextRetry().has_value());
  s.Done(*std::move(again));
  EXPECT_EQ(s.backlog_pages(), 0u);
  EXPECT_THAT(Starts(s), IsEmpty());
}

TEST(ScrubberTest, QueuedJobsGoBeforeADueFailedOne) {
  Scrubber s(kRetry);
  s.Push(Job(1, 0, 1));
  s.Failed(*s.Next(kNow), kNow);
  s.Push(Job(2, 10, 1));
  const absl::Time later = kNow + 2 * kRetry;
  std::optional<ScrubJob> first = s.Next(later);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->id, 2u);
  s.Done(*std::move(first));
  std::optional<ScrubJob> second = s.Next(later);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->id, 1u);
}

TEST(ScrubberTest, NextRetryIsTheEarliestFailure) {
  Scrubber s(kRetry);
  s.Push(Job(1, 0, 1));
  s.Push(Job(2, 10, 1));
  s.Failed(*s.Next(kNow), kNow + absl::Seconds(3));
  s.Failed(*s.Next(kNow), kNow);
  EXPECT_EQ(s.NextRetry(), kNow + kRetry);
  EXPECT_EQ(s.errors(), 2u);
  // Only the one that is due is offered.
  std::optional<ScrubJob> j = s.Next(kNow + kRetry);
  ASSERT_TRUE(j.has_value());
  EXPECT_EQ(j->id, 2u);
  s.Done(*std::move(j));
  EXPECT_FALSE(s.Next(kNow + kRetry).has_value());
  EXPECT_EQ(s.NextRetry(), kNow + absl::Seconds(3) + kRetry);
}

}  // namespace
}  // namespace physpool::server
