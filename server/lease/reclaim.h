// SPDX-License-Identifier: Apache-2.0
// The aggressive path (docs/api.md, "Reclaim"): a request that only
// preemptible leases stand in the way of takes their window. Their leases
// end now (PREEMPTED, with a grace period for their devices to stop), their
// ends are recorded, then — once no view of theirs is left and no device
// can reach them — their memory is zeroed and the window becomes the new
// lease, checked against the quota again (the lease recorded in one
// transaction with the end of the zeroing). A reclaim no longer wanted, too
// late or over quota gives the memory back.
//
// State: none of its own: the reclaims in progress are a shelf
// (reclaimer.h).
// Thread safety: not thread-safe; every method takes the Turn that proves
// the pool's lock. Completions re-enter through the Coordinator.
// I/O: under the lock, Start ends the victims now (Ender::EndNow), and
// their unmap from their tenants' devices is one of DeviceMap's named
// exceptions (pool_manager.h). Zeroing runs on the scrub thread, store
// writes through the Committer and the DurableLog.
// REQUIRES: the Deps outlive it.
#ifndef PHYSPOOL_SERVER_LEASE_RECLAIM_H_
#define PHYSPOOL_SERVER_LEASE_RECLAIM_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "pglist/pool.h"
#include "server/core/histogram.h"
#include "server/core/options.h"
#include "server/core/turn.h"
#include "server/lease/end.h"
#include "server/lease/grant.h"
#include "server/lease/quota.h"
#include "server/lease/reclaimer.h"
#include "server/lease/request_ids.h"

namespace physpool::server {

class Reclaim {
 public:
  struct Deps {
    const ManagerOptions* options;
    pglist::Pool* pool;
    Lessor* lessor;
    Reclaimer* reclaims;
    LeaseViews* views;
    Granter* granter;
    Ender* ender;
    Recycler* recycler;
    DeviceMap* devices;
    Quota* quota;
    RequestIds* request_ids;
    Committer* committer;
    DurableLog* durable;
    Coordinator* coordinator;
    Histogram* wait_seconds;   // finished waits (Waiting's)
    PathTimes* alloc_seconds;  // by path (Placement's)
  };
  explicit Reclaim(Deps d) : d_(d) {}

  // Starts reclaiming `plan`'s window for `tenant`: its victims preempted
  // now, the window's free pages held.
  void Start(Turn& t, const Tenant& tenant, const AllocateParams& p,
             const std::string& fp, const pglist::ReclaimPlan& plan,
             uint64_t handle, absl::Time deadline, absl::Time since,
             AllocDone done);
  // Reclaims past their grace period whose victims' ends are durable: their
  // memory zeroed once no view of it is left (or abandoned at the deadline).
  void Ready(Turn& t);
  // Ends a reclaim that cannot hand its window over: answered `why`, its
  // held pages freed, its victims zeroed and freed once released (or held
  // back if stuck).
  void Abandon(Turn& t, uint64_t handle, absl::Status why);

 private:
  // The victims' memory is zero: the window becomes the lease, or comes
  // back (no longer wanted, too late, over quota now).
  void Finish(Turn& t, uint64_t handle);
  void Granted(Turn& t, uint64_t handle, const LeaseInfo& info,
               const std::vector<pglist::AllocationId>& allocs,
               const absl::Status& s);
  // Zeroes a ready reclaim's victims (unless one is stuck: abandoned).
  void ZeroVictims(Turn& t, uint64_t handle);

  const Deps d_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_RECLAIM_H_
