// SPDX-License-Identifier: Apache-2.0
// Reclaims in progress (the aggressive path): a request whose window is
// being freed by preempting other tenants' preemptible leases. Each waits
// for the grace period (the victims' devices may still be writing) and for
// the victims' ends to be durable, then for their memory to be zeroed,
// then it becomes a lease — checked against the quota again at that moment.
// Meanwhile its bytes count against its tenant's quota (pending), so that
// parallel reclaims cannot exceed it.
//
// State: the reclaims in progress, oldest first.
// Thread safety: not thread-safe; its callers (flows in a Turn) hold the
// pool's lock.
// I/O: none.
// REQUIRES: a PendingReclaim* it returns is used only until that reclaim
// is taken.
#ifndef PHYSPOOL_SERVER_RECLAIMER_H_
#define PHYSPOOL_SERVER_RECLAIMER_H_

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "pglist/outcome.h"
#include "server/lease/wait_queue.h"

namespace physpool::server {

struct PendingReclaim {
  uint64_t handle = 0;  // its own: what its continuations find it by
  // What its caller cancels it with: `handle`, or a new one for a retry
  // that took it over (the first caller's cancel no longer reaches it).
  uint64_t caller = 0;
  Tenant tenant;
  AllocateParams params;  // with the request actually planned
  std::string fingerprint;
  pglist::ReclaimPlan plan;
  uint64_t bytes = 0;  // the window's
  // The victims' allocations and the store rows of their memory to zero.
  std::vector<pglist::AllocationId> victims;
  std::vector<int64_t> victim_rows;
  int unrecorded_ends = 0;  // victims whose end is not durable yet
  std::optional<pglist::AllocationId> hold;  // free pages of the window
  absl::Time ready;                          // end of the grace period
  absl::Time deadline;
  absl::Time since;
  bool zeroing = false;  // past the grace period, memory being zeroed
  AllocDone done;        // empty once answered (cancelled, shut down)
};

class Reclaimer {
 public:
  using Iterator = std::list<PendingReclaim>::iterator;

  PendingReclaim& Add(PendingReclaim r);
  PendingReclaim* ByHandle(uint64_t handle);
  PendingReclaim* ByCaller(uint64_t caller);
  PendingReclaim* ByRequest(const std::string& tenant,
                            const std::string& request_id);
  // Removes the reclaim with `handle` and returns it.
  std::optional<PendingReclaim> Take(uint64_t handle);
  // Reclaims past their grace period whose victims' ends are durable and
  // not yet zeroing, oldest first; marked zeroing.
  std::vector<PendingReclaim*> TakeReady(absl::Time now);
  // When the next one TakeReady would take becomes ready: reclaims still
  // waiting for their victims' ends to be stored are left out.
  std::optional<absl::Time> NextReady() const;

  // What `tenant`'s reclaims in progress will hold.
  TenantUsage Pending(const std::string& tenant) const;
  size_t size() const { return pending_.size(); }
  template <typename F>
  void ForEach(F f) {
    for (PendingReclaim& r : pending_) f(r);
  }

 private:
  std::list<PendingReclaim> pending_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_RECLAIMER_H_
