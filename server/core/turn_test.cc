// SPDX-License-Identifier: Apache-2.0
// Turns (core/turn.h) as TurnTesting makes them: answers queued with Later
// run after the turn, in order; MemoryFreed is reported once per turn;
// wake-ups and `accepting` reach the host; now() is the injected clock.
#include "server/core/turn.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/fake_clock.h"
#include "server/core/turn_testing.h"

namespace physpool::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class TurnTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  TurnTesting tt_{&clock_};
};

TEST_F(TurnTest, LaterRunsOnlyAfterTheTurnInTheOrderQueued) {
  std::vector<int> ran;
  std::unique_ptr<Turn> t = tt_.Begin();
  t->Later([&] { ran.push_back(1); });
  t->Later([&] { ran.push_back(2); });
  t->Later([&] { ran.push_back(3); });
  EXPECT_THAT(ran, IsEmpty()) << "nothing runs while the turn lasts";
  tt_.End(*t);
  EXPECT_THAT(ran, ElementsAre(1, 2, 3));
}

TEST_F(TurnTest, WhatATurnQueuedRunsOnceOnly) {
  int runs = 0;
  std::unique_ptr<Turn> t = tt_.Begin();
  t->Later([&] { ++runs; });
  tt_.End(*t);
  tt_.End(*t);  // a second end finds nothing left
  EXPECT_EQ(runs, 1);
}

TEST_F(TurnTest, LockedRunsItsAnswersAfterTheFunctionReturns) {
  std::vector<std::string> ran;
  tt_.Locked([&](Turn& t) {
    t.Later([&] { ran.push_back("answer"); });
    ran.push_back("fn");
  });
  EXPECT_THAT(ran, ElementsAre("fn", "answer"));
}

TEST_F(TurnTest, MemoryFreedIsReportedOncePerTurn) {
  std::unique_ptr<Turn> t = tt_.Begin();
  t->MemoryFreed();
  t->MemoryFreed();
  t->MemoryFreed();
  EXPECT_TRUE(tt_.End(*t));
  EXPECT_FALSE(tt_.End(*t)) << "the flag is taken by the first end";

  std::unique_ptr<Turn> quiet = tt_.Begin();
  EXPECT_FALSE(tt_.End(*quiet)) << "a turn that freed nothing";
}

TEST_F(TurnTest, LockedCountsTurnsThatFreedMemoryNotCalls) {
  tt_.Locked([](Turn& t) {
    t.MemoryFreed();
    t.MemoryFreed();
  });
  EXPECT_EQ(tt_.freed(), 1);
  tt_.Locked([](Turn&) {});
  EXPECT_EQ(tt_.freed(), 1);
  tt_.Locked([](Turn& t) { t.MemoryFreed(); });
  EXPECT_EQ(tt_.freed(), 2);
}

TEST_F(TurnTest, WakeUpsReachTheHost) {
  tt_.Locked([&](Turn& t) {
    t.WakeMaintenanceBy(t.now() + absl::Seconds(5));
    t.WakeMaintenance();
    t.WakeScrubber();
    t.ScanSoon();
    t.ScanSoon();
  });
  EXPECT_EQ(tt_.maintenance_wakes, 2);
  EXPECT_EQ(tt_.scrubber_wakes, 1);
  EXPECT_EQ(tt_.scans, 2);
}

TEST_F(TurnTest, AcceptingIsTheHostsAnswerAtTheTime) {
  std::unique_ptr<Turn> t = tt_.Begin();
  EXPECT_TRUE(t->accepting());
  tt_.accepting = false;  // shutting down
  EXPECT_FALSE(t->accepting()) << "asked of the host, not copied at Begin";
  tt_.End(*t);
}

TEST_F(TurnTest, NowIsTheInjectedClock) {
  std::unique_ptr<Turn> t = tt_.Begin();
  const absl::Time start = clock_.Now();
  EXPECT_EQ(t->now(), start);
  clock_.Advance(absl::Minutes(3));
  EXPECT_EQ(t->now(), start + absl::Minutes(3));
  tt_.End(*t);
}

}  // namespace
}  // namespace physpool::server
