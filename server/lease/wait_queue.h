// SPDX-License-Identifier: Apache-2.0
// Requests waiting for memory (may_wait), oldest first, with per-tenant
// counts and their deadlines. The starvation guard: a waiter older than
// `starvation` holds back younger requests that compete for the same memory
// (Competes), and only those, so that a stream of small requests cannot
// starve a big one forever, while requests for other memory go on.
//
// State: the waiters, oldest first, and how many each tenant has.
// Thread safety: not thread-safe; its callers (flows in a Turn) hold the
// pool's lock.
// I/O: none.
// REQUIRES: a Waiter* or iterator it gives is used only until that waiter
// is removed.
#ifndef PHYSPOOL_SERVER_WAIT_QUEUE_H_
#define PHYSPOOL_SERVER_WAIT_QUEUE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pglist/request.h"
#include "server/lease/lessor.h"
#include "server/lease/tenants.h"

namespace physpool::server {

// Whether two requests could take the same pages: their IOVA windows
// overlap and their NUMA nodes may be the same (a preferred node that is not
// strict may fall back to any).
bool Competes(const AllocateParams& a, const AllocateParams& b);

using AllocDone = std::function<void(absl::StatusOr<LeaseInfo>)>;

struct Waiter {
  uint64_t handle = 0;
  Tenant tenant;
  AllocateParams params;
  std::string fingerprint;  // of params, for request-id retries
  absl::Time deadline;
  absl::Time since;  // when it first waited (kept when a retry takes over)
  AllocDone done;
};

class WaitQueue {
 public:
  using Iterator = std::list<Waiter>::iterator;

  explicit WaitQueue(absl::Duration starvation) : starvation_(starvation) {}

  void Push(Waiter w);
  // nullopt if no waiter has `handle`.
  std::optional<Waiter> Remove(uint64_t handle);
  Iterator Erase(Iterator it);
  // The waiter of `tenant` with `request_id`, if any.
  Waiter* ByRequest(const std::string& tenant, const std::string& request_id);

  // The oldest starving waiter (waiting since `starvation` or longer at
  // `now`) that competes with `p`, among those ahead of `before` (all if
  // end()).
  const Waiter* StarvingRival(const AllocateParams& p, absl::Time now,
                              Iterator before);
  // Ends every waiter whose deadline is at or before `now`: removed and
  // passed to `f`.
  void TakeExpired(absl::Time now, const std::function<void(Waiter)>& f);
  std::optional<absl::Time> NextDeadline() const;

  Iterator begin() { return waiters_.begin(); }
  Iterator end() { return waiters_.end(); }
  size_t size() const { return waiters_.size(); }
  uint32_t CountOf(const std::string& tenant) const;
  // Removes all, oldest first.
  void Drain(const std::function<void(Waiter)>& f);

 private:
  // Removes *it (advancing it) and returns the waiter.
  Waiter Unlink(Iterator* it);

  const absl::Duration starvation_;
  std::list<Waiter> waiters_;
  std::map<std::string, uint32_t> per_tenant_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_WAIT_QUEUE_H_
