// SPDX-License-Identifier: Apache-2.0
// The Committer: who applies a change (the submitting thread at the end of
// its Scope, or the committer's thread), in what order completions run, and
// what a failing change undoes (with a real SQLite store).
#include "server/store/committer.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "util/status_macros.h"

namespace physpool::server {
namespace {

Committer::Change Nothing() {
  return [](LeaseStore&) { return absl::OkStatus(); };
}

TEST(CommitterTest, AScopesChangeIsAppliedByItsOwnThreadWhenTheScopeEnds) {
  Committer c(nullptr);
  const std::thread::id me = std::this_thread::get_id();
  std::thread::id ran_on;
  bool done = false;
  {
    Committer::Scope scope(&c);
    c.Submit(Nothing(), [&](absl::Status s) {
      EXPECT_TRUE(s.ok());
      ran_on = std::this_thread::get_id();
      done = true;
    });
    // Not before the scope ends: the caller may still hold its locks.
    absl::SleepFor(absl::Milliseconds(20));
    EXPECT_FALSE(done);
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(ran_on, me);
  EXPECT_EQ(c.stats().led, 1u);
}

TEST(CommitterTest, NestedScopesApplyOnlyWhenTheOutermostEnds) {
  Committer c(nullptr);
  bool done = false;
  {
    Committer::Scope outer(&c);
    {
      Committer::Scope inner(&c);
      c.Submit(Nothing(), [&](absl::Status) { done = true; });
    }
    EXPECT_FALSE(done);
  }
  EXPECT_TRUE(done);
}

TEST(CommitterTest, AChangeOutsideAScopeIsAppliedByTheCommittersThread) {
  Committer c(nullptr);
  absl::Notification n;
  std::thread::id ran_on;
  c.Submit(Nothing(), [&](absl::Status) {
    ran_on = std::this_thread::get_id();
    n.Notify();
  });
  ASSERT_TRUE(n.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_NE(ran_on, std::this_thread::get_id());
  EXPECT_EQ(c.stats().led, 0u);
}

TEST(CommitterTest, AChangeSubmittedByACompletionIsNotStranded) {
  Committer c(nullptr);
  absl::Notification second;
  {
    Committer::Scope scope(&c);
    c.Submit(Nothing(), [&](absl::Status) {
      // Inside the leader: a nested Scope finds it busy and returns; the
      // leader (or the committer's thread) applies this one.
      Committer::Scope nested(&c);
      c.Submit(Nothing(), [&](absl::Status) { second.Notify(); });
    });
  }
  EXPECT_TRUE(second.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

// Many threads, some in Scopes and some not: every completion runs exactly
// once, in the order the changes were queued, and concurrent callers share
// transactions.
TEST(CommitterTest, CompletionsRunOnceInSubmissionOrderUnderContention) {
  Committer c(nullptr);
  constexpr int kThreads = 8, kEach = 2000;
  absl::Mutex order_mu;  // makes "submitted before" observable
  int next_seq = 0;
  std::vector<int> completed;
  absl::Mutex completed_mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto submit = [&] {
          absl::MutexLock l(&order_mu);
          const int seq = next_seq++;
          c.Submit(Nothing(), [&, seq](absl::Status s) {
            EXPECT_TRUE(s.ok());
            absl::MutexLock cl(&completed_mu);
            completed.push_back(seq);
          });
        };
        if (t % 2 == 0) {
          Committer::Scope scope(&c);
          submit();
        } else {
          submit();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  c.Stop();
  ASSERT_EQ(completed.size(), static_cast<size_t>(kThreads * kEach));
  for (size_t i = 0; i < completed.size(); ++i) {
    ASSERT_EQ(completed[i], static_cast<int>(i)) << "at " << i;
  }
  const Committer::Stats st = c.stats();
  EXPECT_EQ(st.changes, static_cast<uint64_t>(kThreads * kEach));
  EXPECT_GT(st.led, 0u);
}

TEST(CommitterTest, StopAppliesWhatWasQueuedAndRefusesLaterChanges) {
  Committer c(nullptr);
  std::atomic<int> ok{0};
  for (int i = 0; i < 100; ++i) {
    c.Submit(Nothing(), [&](absl::Status s) { ok += s.ok(); });
  }
  c.Stop();
  EXPECT_EQ(ok.load(), 100);
  absl::Status late;
  c.Submit(Nothing(), [&](absl::Status s) { late = s; });
  EXPECT_EQ(late.code(), absl::StatusCode::kUnavailable);
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/physpool-committer-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    std::string cmd = "rm -rf " + dir_;
    ASSERT_EQ(system(cmd.c_str()), 0);
  }
  std::unique_ptr<LeaseStore> Open() {
    auto s = LeaseStore::Open(dir_ + "/leases.db", "boot", "layout");
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  static Committer::Change Put(const std::string& id) {
    return [id](LeaseStore& s) {
      StoredLease l;
      l.id = id;
      l.tenant = "t";
      l.runs = {{pglist::Pfn{1}, pglist::PageCount{1}}};
      return s.PutLease(l);
    };
  }
  static Committer::Change Fail() {
    return [](LeaseStore& s) -> absl::Status {
      StoredLease l;
      l.id = "doomed";
      l.tenant = "t";
      RETURN_IF_ERROR(s.PutLease(l));  // written, then undone
      return absl::InternalError("this change fails");
    };
  }
  static std::set<std::string> Ids(const LeaseStore& s) {
    std::set<std::string> ids;
    for (const StoredLease& l : s.leases()) ids.insert(l.id);
    return ids;
  }
  std::string dir_;
};

TEST_F(StoreTest, AFailingChangeAloneLeavesTheStoreAsItWas) {
  {
    auto store = Open();
    Committer c(store.get());
    std::vector<absl::Status> got;
    for (auto change : {Put("a"), Fail(), Put("b")}) {
      Committer::Scope scope(&c);  // one change per transaction
      c.Submit(change, [&](absl::Status s) { got.push_back(s); });
    }
    c.Stop();
    ASSERT_EQ(got.size(), 3u);
    EXPECT_TRUE(got[0].ok());
    EXPECT_EQ(got[1].code(), absl::StatusCode::kInternal);
    EXPECT_TRUE(got[2].ok()) << "a failed transaction must not block the next";
    EXPECT_EQ(c.stats().transactions, 3u);
  }
  EXPECT_EQ(Ids(*Open()), (std::set<std::string>{"a", "b"}));
}

TEST_F(StoreTest, AFailingChangeInABatchUndoesOnlyItself) {
  {
    auto store = Open();
    Committer c(store.get());
    std::vector<absl::Status> got;
    {
      Committer::Scope scope(&c);  // all three in one transaction
      for (auto change : {Put("a"), Fail(), Put("b")})
        c.Submit(change, [&](absl::Status s) { got.push_back(s); });
    }
    c.Stop();
    ASSERT_EQ(got.size(), 3u);
    EXPECT_TRUE(got[0].ok());
    EXPECT_EQ(got[1].code(), absl::StatusCode::kInternal);
    EXPECT_TRUE(got[2].ok());
    EXPECT_EQ(c.stats().transactions, 1u);
  }
  EXPECT_EQ(Ids(*Open()), (std::set<std::string>{"a", "b"}));
}

// A Scope that ends while the committer's thread is applying leaves its
// change to that thread, which must take it (not wait for more work).
TEST_F(StoreTest, AScopeThatFindsTheThreadBusyLeavesItsChangeToIt) {
  auto store = Open();
  Committer c(store.get());
  absl::Notification applying, release, done;
  c.Submit(
      [&](LeaseStore&) {
        applying.Notify();
        release.WaitForNotification();
        return absl::OkStatus();
      },
      [](absl::Status) {});
  applying.WaitForNotification();  // the committer's thread is busy
  {
    Committer::Scope scope(&c);
    c.Submit(Nothing(), [&](absl::Status) { done.Notify(); });
  }  // finds it busy: returns at once
  EXPECT_FALSE(done.HasBeenNotified());
  release.Notify();
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

}  // namespace
}  // namespace physpool::server
