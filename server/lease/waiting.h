// SPDX-License-Identifier: Apache-2.0
// Waiting (docs/api.md, "Waiting"): a request that cannot be served now
// and may wait is queued (FIFO, capped per tenant, bounded by its deadline)
// and retried whenever memory comes back; an old waiter holds back younger
// requests for the same memory (starvation guard). Answered when served,
// when it can never be served as it stands, when its deadline passes, when
// cancelled, or at shutdown.
//
// State: how many waits were started (the queue itself is a shelf,
// wait_queue.h).
// Thread safety: not thread-safe; every method takes the Turn that proves
// the pool's lock.
// I/O: none of its own; placement's (placement.h: a reclaim it starts
// unmaps its victims under the lock).
// REQUIRES: what the constructor is given outlives it.
#ifndef PHYSPOOL_SERVER_LEASE_WAITING_H_
#define PHYSPOOL_SERVER_LEASE_WAITING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "pglist/outcome.h"
#include "pglist/pool.h"
#include "server/core/histogram.h"
#include "server/core/options.h"
#include "server/core/turn.h"
#include "server/lease/placement.h"
#include "server/lease/reclaimer.h"
#include "server/lease/request_ids.h"
#include "server/lease/wait_queue.h"

namespace physpool::server {

// Reasons a request may wait for: frees could serve it.
bool Waitable(pglist::FailReason r);

class Waiting {
 public:
  // `wait_seconds` receives the finished waits' durations.
  Waiting(const ManagerOptions* options, pglist::Pool* pool, WaitQueue* waiters,
          Reclaimer* reclaims, Placement* placement, RequestIds* request_ids,
          Histogram* wait_seconds)
      : options_(options),
        pool_(pool),
        waiters_(waiters),
        reclaims_(reclaims),
        placement_(placement),
        request_ids_(request_ids),
        wait_seconds_(wait_seconds) {}

  // Queues `w` (RESOURCE_EXHAUSTED beyond the tenant's cap: then false and
  // answered).
  bool Enqueue(Turn& t, Waiter w);
  // Serves the waiters that fit now, oldest first; answers those that
  // never can as they stand (quota, never fits).
  void Retry(Turn& t);
  // Waiters whose deadline passed: DEADLINE_EXCEEDED.
  void Expire(Turn& t);
  // A waiting request (or a reclaim in progress) ends with CANCELLED.
  void Cancel(Turn& t, uint64_t handle);
  // Shutdown: every waiter and reclaim answered `why`. How many.
  size_t Drain(Turn& t, const absl::Status& why);

  uint64_t waits_started() const { return waits_started_; }

 private:
  const ManagerOptions* const options_;
  pglist::Pool* const pool_;
  WaitQueue* const waiters_;
  Reclaimer* const reclaims_;
  Placement* const placement_;
  RequestIds* const request_ids_;
  Histogram* const wait_seconds_;
  uint64_t waits_started_ = 0;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_WAITING_H_
