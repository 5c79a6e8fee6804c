// SPDX-License-Identifier: Apache-2.0
// Admission: an Allocate as it arrives. It is refused if the daemon is
// stopping or the request misuses an access token; a retry of a request id
// (docs/api.md, "Request ids") gets its lease, its final error, attaches to
// its grant or takes over its wait or reclaim — or is refused if it asks
// for something else; a new request is capped in how long it may wait, held
// back behind an older starving one for the same memory, and then placed
// (placement.h), queued to wait, or answered why not.
//
// State: the request handles (a counter).
// Thread safety: not thread-safe; every method takes the Turn that proves
// the pool's lock.
// I/O: none of its own; placement's (placement.h: a reclaim it starts
// unmaps its victims under the lock).
// REQUIRES: the Deps outlive it.
#ifndef PHYSPOOL_SERVER_LEASE_ADMISSION_H_
#define PHYSPOOL_SERVER_LEASE_ADMISSION_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "server/core/options.h"
#include "server/core/turn.h"
#include "server/lease/grant.h"
#include "server/lease/lessor.h"
#include "server/lease/placement.h"
#include "server/lease/reclaimer.h"
#include "server/lease/request_ids.h"
#include "server/lease/wait_queue.h"
#include "server/lease/waiting.h"

namespace physpool::server {

class Admission {
 public:
  struct Deps {
    const ManagerOptions* options;
    Lessor* lessor;
    WaitQueue* waiters;
    Reclaimer* reclaims;
    Granter* granter;
    Placement* placement;
    Waiting* waiting;
    RequestIds* request_ids;
  };
  explicit Admission(Deps d) : d_(d) {}

  // As PoolManager::Allocate: `done` runs exactly once (after the turn, or
  // later). Returns a handle for Waiting::Cancel (0 if answered already).
  // REQUIRES: `params.req.privileged` and `run_cap` are set.
  uint64_t Admit(Turn& t, const Tenant& tenant, AllocateParams params,
                 absl::Time deadline, AllocDone done);
  // A new handle (requests, Watch subscriptions).
  uint64_t NewHandle(Turn&) { return next_handle_++; }

 private:
  // A retry of request id `params.request_id`: answered or taken over
  // (true), or not a retry (false).
  bool Retry(Turn& t, const Tenant& tenant, const AllocateParams& params,
             const std::string& fp, absl::Time deadline, AllocDone* done,
             uint64_t* handle);
  // A new request: placed, queued or answered; its handle or 0.
  uint64_t New(Turn& t, const Tenant& tenant, AllocateParams params,
               const std::string& fp, absl::Time deadline, AllocDone done);

  const Deps d_;
  uint64_t next_handle_ = 1;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_ADMISSION_H_
