// SPDX-License-Identifier: Apache-2.0
// The lease store's writer: changes are queued by any thread and applied in
// order by one thread at a time, many to a transaction (group commit), each
// change in its own savepoint so that one that fails does not undo the
// others. A change's completion runs once its transaction has committed (or
// failed), on the applying thread, with no lock of the caller held, in the
// order the changes were submitted.
//
// Who applies (leader/follower): a thread that submits inside a Scope
// applies the queue itself when its outermost Scope ends, unless another
// thread is applying already (then that one takes its changes along: the
// group commit). Changes submitted outside a Scope wake the committer's own
// thread. So an RPC thread commits and answers its own change with no
// hand-off when nobody else is committing, and concurrent callers share
// transactions.
//
// A change is durable (WAL, synchronous=NORMAL: it survives a kill of the
// daemon; a host crash may lose the last ones, and a host reboot voids
// leases anyway) when its completion sees OK. A failed change left the
// store as it was before it.
//
// Without a store every change succeeds at once (still on the applying
// thread, so completions never run under the submitter's locks). After
// Stop, a submission fails with UNAVAILABLE at once: its completion runs
// inside Submit, on the submitting thread.
//
// State: the queue of changes, which thread applies, the counts; its
// thread. Thread safety: thread-safe (its own mutex).
// I/O: the store (SQLite writes and commits) and the changes' Prepare
// steps (the memory source: device maps and unmaps, zeroing), on the
// applying thread, with no lock of a submitter held.
// REQUIRES: `store` (if any) outlives it. A Scope is made before taking
// any lock that a completion takes (its end applies and runs completions).
// Nothing submits after Stop while holding a lock its completion takes
// (that completion would run inside Submit: a self-deadlock).
#ifndef PHYSPOOL_SERVER_COMMITTER_H_
#define PHYSPOOL_SERVER_COMMITTER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/store/lease_store.h"

namespace physpool::server {

class Committer {
 public:
  // Statements of one change; runs inside a savepoint.
  using Change = std::function<absl::Status(LeaseStore&)>;
  // Called with the change's fate: OK once committed, else why not.
  using Done = std::function<void(absl::Status)>;
  // Work of a change that needs no store and no lock (zeroing memory): run
  // by the applying thread before its batch's transaction, with or without
  // a store.
  using Prepare = std::function<void()>;

  // `store` may be null; it must outlive the committer. At most
  // `max_batch` changes share a transaction.
  explicit Committer(LeaseStore* store, size_t max_batch = 256);
  ~Committer();  // Stop()

  // Queues a change. Inside a Scope of this committer on this thread, it is
  // applied when the outermost Scope ends; otherwise by the committer's
  // thread (or by whichever thread is applying at the time).
  void Submit(Change change, Done done, Prepare prepare = nullptr);

  // While one lives on a thread, that thread's submissions wait for its end
  // instead of waking the committer's thread; the outermost one's end
  // applies the queue on this thread (unless another thread is applying:
  // then it returns at once). Create it before taking any lock that a
  // completion takes; completions may run in its destructor.
  class Scope {
   public:
    explicit Scope(Committer* c);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Committer* const committer_;
    Committer* const outer_;
  };

  // Applies what was submitted, runs its completions, stops the thread.
  // Later submissions fail with UNAVAILABLE. Idempotent.
  void Stop();

  struct Stats {
    uint64_t transactions = 0;
    uint64_t changes = 0;
    uint64_t errors = 0;  // changes that failed
    uint64_t led = 0;     // transactions applied by a submitting thread
  };
  Stats stats() const;

 private:
  struct Item {
    Change change;
    Done done;
    Prepare prepare;
    bool deferred;  // submitted inside a Scope: its thread applies it
  };
  void Loop();
  // Applies the queue on this thread unless another thread is; at most
  // `rounds` transactions, then the committer's thread takes the rest.
  void Drive(int rounds);
  // With busy_ set by the caller: applies up to `rounds` batches, then
  // clears busy_ and hands what is left to the committer's thread.
  void Lead(int rounds, bool led) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the next batch; call with mu_ held and busy_ set by the caller.
  std::vector<Item> TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies a batch in one transaction and runs its completions.
  void Apply(std::vector<Item> batch, bool led);

  LeaseStore* const store_;
  const size_t max_batch_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // A thread is applying a batch; whoever set it checks the queue again
  // before clearing it, so a change queued meanwhile is never stranded.
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  // Queued changes submitted outside a Scope: the committer's thread only
  // runs for these (or a hand-off), never ahead of a Scope that will apply
  // its own.
  size_t undeferred_ ABSL_GUARDED_BY(mu_) = 0;
  // A leader stopped with changes left: the committer's thread takes them.
  bool handoff_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_COMMITTER_H_
