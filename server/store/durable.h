// SPDX-License-Identifier: Apache-2.0
// Changes that cannot be undone — an expiry's or a preemption's end, the
// end of zeroing — written through the Committer. If such a write fails,
// the change is kept and retried until the store takes it; meanwhile the
// store is "not writable" (the daemon says NOT_SERVING) and a probe write
// every `retry` tells when it takes writes again (docs/operations.md, "The
// store fails closed"). A change an RPC makes (grant, renewal, release) is
// not retried: its caller gets UNAVAILABLE, and reports it with Failed.
//
// State: the changes held back, whether the store is writable, the probe.
// Thread safety: not thread-safe; the methods that change it take the Turn
// that proves the pool's lock, and writable() and errors() are read under
// it too.
// I/O: none under the lock: the Committer writes after the turn;
// completions re-enter through the Coordinator (a turn of their own).
// REQUIRES: `committer` and `coordinator` outlive it; the Committer is not
// stopped while a turn may still Submit (see committer.h).
#ifndef PHYSPOOL_SERVER_STORE_DURABLE_H_
#define PHYSPOOL_SERVER_STORE_DURABLE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/core/turn.h"
#include "server/store/committer.h"

namespace physpool::server {

class DurableLog {
 public:
  // `committer` and `coordinator` outlive it.
  DurableLog(Committer* committer, Coordinator* coordinator,
             absl::Duration retry)
      : committer_(committer), coordinator_(coordinator), retry_(retry) {}

  // Writes `change`; once it is stored, `ok` runs in a turn. If the write
  // fails the change is kept (its caller's pages stay held) and retried.
  void Submit(Turn& t, Committer::Change change, TurnStep ok);
  // A write failed: the store is not writable until a probe succeeds.
  void Failed(Turn& t, const absl::Status& s);
  // If the store is not writable and a probe is due: probes it; once a
  // probe succeeds, the held changes are written again.
  void ProbeIfDue(Turn& t);
  // From now on a failed write is dropped, not held (the daemon stops).
  void Stop(Turn&) { stopping_ = true; }

  bool writable() const { return writable_; }
  uint64_t errors() const { return errors_; }
  // How long the maintenance thread may sleep at most.
  absl::Duration retry() const { return retry_; }

 private:
  struct Held {
    std::shared_ptr<Committer::Change> change;
    TurnStep ok;
  };
  void Write(Turn& t, std::shared_ptr<Committer::Change> change, TurnStep ok);

  Committer* const committer_;
  Coordinator* const coordinator_;
  const absl::Duration retry_;
  std::vector<Held> held_;
  uint32_t unrecorded_ = 0;  // held changes not yet written
  bool writable_ = true;
  bool probing_ = false;
  bool stopping_ = false;
  absl::Time next_probe_;
  uint64_t errors_ = 0;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_STORE_DURABLE_H_
