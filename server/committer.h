// The lease store's writer: changes are queued by any thread and applied in
// order by one thread, many to a transaction (group commit), each change in
// its own savepoint so that one that fails does not undo the others. A
// change's completion runs once its transaction has committed (or failed),
// on the committer's thread, with no lock of the caller held, in the order
// the changes were submitted.
//
// A change is durable (WAL, synchronous=NORMAL: it survives a kill of the
// daemon; a host crash may lose the last ones, and a host reboot voids
// leases anyway) when its completion sees OK. A failed change left the
// store as it was before it.
//
// Without a store every change succeeds at once (still on the thread, so
// completions never run under the submitter's locks).
//
// Thread-safe.
#ifndef PHYSPOOL_SERVER_COMMITTER_H_
#define PHYSPOOL_SERVER_COMMITTER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/lease_store.h"

namespace physpool::server {

class Committer {
 public:
  // Statements of one change; runs inside a savepoint.
  using Change = std::function<absl::Status(LeaseStore&)>;
  // Called with the change's fate: OK once committed, else why not.
  using Done = std::function<void(absl::Status)>;

  // `store` may be null; it must outlive the committer. At most
  // `max_batch` changes share a transaction.
  explicit Committer(LeaseStore* store, size_t max_batch = 256);
  ~Committer();  // Stop()

  void Submit(Change change, Done done);
  // Applies what was submitted, runs its completions, stops the thread.
  // Later submissions fail with UNAVAILABLE. Idempotent.
  void Stop();

  struct Stats {
    uint64_t transactions = 0;
    uint64_t changes = 0;
    uint64_t errors = 0;  // changes that failed
  };
  Stats stats() const;

 private:
  struct Item {
    Change change;
    Done done;
  };
  void Loop();

  LeaseStore* const store_;
  const size_t max_batch_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_COMMITTER_H_
