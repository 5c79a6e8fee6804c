// SPDX-License-Identifier: Apache-2.0
// The durable log (store/durable.h) over a real SQLite LeaseStore whose
// writes are made to fail by a trigger (RAISE(ABORT)) added through a
// connection of the test's own: a change that fails is held and the store
// is not writable; a probe, once due, tells when the store takes writes
// again and the held changes are written again, in order; a change's
// continuation runs once, in a turn, and only once the change is stored.
#include "server/store/durable.h"

#include <stdlib.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/core/fake_clock.h"
#include "server/core/turn_testing.h"
#include "server/store/committer.h"
#include "server/store/lease_store.h"
#include "server/store/testing/store_file.h"

namespace physpool::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class DurableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/physpool-durable-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/leases.db";
    file_ = physpool::testing::StoreFile(path_);
    ASSERT_OK_AND_ASSIGN(store_, LeaseStore::Open(path_, "boot", "layout"));
    committer_ = std::make_unique<Committer>(store_.get());
  }
  void TearDown() override {
    durable_.reset();
    committer_.reset();  // applies what is in flight first
    store_.reset();
    ASSERT_EQ(std::system(("rm -rf " + dir_).c_str()), 0);
  }

  // The log, probing every `retry` (wall time) once not writable.
  void Make(absl::Duration retry = absl::ZeroDuration()) {
    durable_ = std::make_unique<DurableLog>(committer_.get(), &tt_, retry);
  }

  // Runs `fn` in a turn inside a Committer::Scope, as the coordinator
  // does: the writes it submits are applied on this thread when the scope
  // ends, and their completions have run (in turns of their own) by then.
  void Step(absl::FunctionRef<void(Turn&)> fn) {
    Committer::Scope scope(committer_.get());
    tt_.Locked(fn);
  }

  // A change recording scrub row `row`; counts its attempts.
  Committer::Change AddScrub(int64_t row) {
    return [this, row](LeaseStore& s) {
      ++attempts_;
      return s.AddScrub(row, {{pglist::Pfn{static_cast<uint64_t>(row)},
                               pglist::PageCount{1}}});
    };
  }
  // A continuation that records `row` and that it ran in a turn that can
  // free memory.
  TurnStep Stored(int64_t row) {
    return [this, row](Turn& t) {
      stored_.push_back(row);
      t.MemoryFreed();
    };
  }
  void Submit(int64_t row) {
    Step([&](Turn& t) { durable_->Submit(t, AddScrub(row), Stored(row)); });
  }
  void Probe() {
    Step([&](Turn& t) { durable_->ProbeIfDue(t); });
  }

  // Makes the store refuse every `what` ("INSERT ON scrubs", "INSERT ON
  // meta": the probe) until Heal.
  void Fail(const std::string& what) { ASSERT_OK(file_.Fail(what)); }
  void Heal() { ASSERT_OK(file_.Heal()); }
  // The scrub rows the file holds, read by a connection of its own.
  std::set<int64_t> Rows() {
    const std::vector<int64_t> rows = file_.Ints("SELECT row FROM scrubs");
    return std::set<int64_t>(rows.begin(), rows.end());
  }

  FakeClock clock_;
  TurnTesting tt_{&clock_};
  std::string dir_, path_;
  std::unique_ptr<LeaseStore> store_;
  std::unique_ptr<Committer> committer_;
  std::unique_ptr<DurableLog> durable_;
  physpool::testing::StoreFile file_{""};
  std::atomic<int> attempts_{0};
  std::vector<int64_t> stored_;
};

TEST_F(DurableTest, AStoredChangeRunsItsContinuationOnceInATurn) {
  Make();
  Submit(1);
  EXPECT_THAT(stored_, ElementsAre(1));
  EXPECT_EQ(tt_.freed(), 1) << "the continuation ran in a turn of its own";
  EXPECT_EQ(Rows(), (std::set<int64_t>{1}));
  EXPECT_TRUE(durable_->writable());
  EXPECT_EQ(durable_->errors(), 0u);
  EXPECT_EQ(attempts_, 1);
}

TEST_F(DurableTest, AFailedChangeIsHeldAndTheStoreIsNotWritable) {
  Make(absl::Hours(1));
  Fail("INSERT ON scrubs");
  const int wakes = tt_.maintenance_wakes;
  Submit(1);
  EXPECT_THAT(stored_, IsEmpty()) << "not stored: its pages stay held";
  EXPECT_THAT(Rows(), IsEmpty());
  EXPECT_FALSE(durable_->writable());
  EXPECT_EQ(durable_->errors(), 1u);
  EXPECT_GT(tt_.maintenance_wakes, wakes) << "the maintenance thread probes";
}

TEST_F(DurableTest, NoProbeBeforeTheRetryIntervalHasPassed) {
  Make(absl::Hours(1));
  Fail("INSERT ON scrubs");
  Submit(1);
  Heal();
  const uint64_t transactions = committer_->stats().transactions;
  Probe();
  EXPECT_EQ(committer_->stats().transactions, transactions) << "no probe";
  EXPECT_FALSE(durable_->writable());
  EXPECT_THAT(stored_, IsEmpty());
  EXPECT_EQ(attempts_, 1) << "nor the held change written again";
}

TEST_F(DurableTest, AProbeThatSucceedsWritesTheHeldChangeAgain) {
  Make();
  Fail("INSERT ON scrubs");
  Submit(1);
  ASSERT_FALSE(durable_->writable());
  Heal();
  Probe();
  EXPECT_TRUE(durable_->writable());
  EXPECT_THAT(stored_, ElementsAre(1)) << "its continuation, once";
  EXPECT_EQ(Rows(), (std::set<int64_t>{1}));
  EXPECT_EQ(attempts_, 2);
  EXPECT_EQ(durable_->errors(), 1u);
  Probe();  // writable: nothing to probe, nothing written again
  EXPECT_THAT(stored_, ElementsAre(1));
  EXPECT_EQ(attempts_, 2);
}

TEST_F(DurableTest, AProbeThatFailsLeavesTheChangesHeld) {
  Make();
  Fail("INSERT ON scrubs");
  Fail("INSERT ON meta");  // the probe's write
  Submit(1);
  Probe();
  EXPECT_FALSE(durable_->writable());
  EXPECT_EQ(durable_->errors(), 2u) << "the write and the probe";
  EXPECT_EQ(attempts_, 1) << "not written again before a probe succeeds";
  EXPECT_THAT(stored_, IsEmpty());
  Heal();
  Probe();
  EXPECT_TRUE(durable_->writable());
  EXPECT_THAT(stored_, ElementsAre(1));
}

TEST_F(DurableTest, HeldChangesAreWrittenAgainInTheOrderTheyFailed) {
  Make();
  Fail("INSERT ON scrubs");
  Submit(3);
  Submit(1);
  Submit(2);
  EXPECT_EQ(durable_->errors(), 3u);
  Heal();
  Probe();
  EXPECT_THAT(stored_, ElementsAre(3, 1, 2));
  EXPECT_EQ(Rows(), (std::set<int64_t>{1, 2, 3}));
  EXPECT_TRUE(durable_->writable());
}

// The probe's write goes through but the held change still fails: it is
// held again (never dropped) and the store is not writable again.
TEST_F(DurableTest, AChangeThatFailsAgainAfterAProbeIsHeldAgain) {
  Make();
  Fail("INSERT ON scrubs");
  Submit(1);
  Probe();
  EXPECT_EQ(attempts_, 2);
  EXPECT_FALSE(durable_->writable());
  EXPECT_THAT(stored_, IsEmpty());
  Heal();
  Probe();
  EXPECT_THAT(stored_, ElementsAre(1));
  EXPECT_TRUE(durable_->writable());
}

TEST_F(DurableTest, AFailureReportedByACallerNeedsAProbeToClear) {
  Make();
  Step([&](Turn& t) {
    durable_->Failed(t, absl::UnavailableError("an RPC's write failed"));
  });
  EXPECT_FALSE(durable_->writable());
  EXPECT_EQ(durable_->errors(), 1u);
  Probe();
  EXPECT_TRUE(durable_->writable()) << "nothing was held";
  EXPECT_EQ(Rows(), std::set<int64_t>{});
}

TEST_F(DurableTest, AfterStopAFailedChangeIsDroppedNotHeld) {
  Make();
  Step([&](Turn& t) { durable_->Stop(t); });
  Fail("INSERT ON scrubs");
  Submit(1);
  EXPECT_THAT(stored_, IsEmpty());
  Heal();
  Probe();
  EXPECT_EQ(attempts_, 1) << "never written again";
  EXPECT_THAT(stored_, IsEmpty());
}

}  // namespace
}  // namespace physpool::server
