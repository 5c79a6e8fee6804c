// SPDX-License-Identifier: Apache-2.0
// Lease ends and renewals. An end that is not an RPC (expiry, preemption)
// happens now and is recorded durably after (its pages held until it is);
// a Release or Revoke is recorded first and answered then (UNAVAILABLE,
// nothing changed, if the store does not take it). Either way the tenant's
// devices lose the pages first, its view is quarantined, its Watch streams
// hear of it (an expiry, a revocation, a preemption: a Release sends no
// event), and the memory goes to the Recycler. A small lease no view
// reaches is zeroed within its end's change (no scrub row, no second
// commit). A renewal is recorded before it is answered.
//
// State: ends being recorded (a second Release attaches), end counters,
// the number of the next scrub row.
// Thread safety: not thread-safe; every method takes the Turn that proves
// the pool's lock. Completions re-enter through the Coordinator.
// I/O: under the lock only DeviceMap's named exceptions (pool_manager.h):
// an expiry's or preemption's unmap (EndNow), the re-map of a lease whose
// end failed to record. A Release's or Revoke's unmap and inline zeroing
// run on the committing thread with no lock; store writes go through the
// Committer and the DurableLog.
// REQUIRES: the Deps outlive it; at start, SetNextScrubRow (past the
// store's scrub rows) before any end.
#ifndef PHYSPOOL_SERVER_LEASE_END_H_
#define PHYSPOOL_SERVER_LEASE_END_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pglist/pool.h"
#include "server/core/options.h"
#include "server/core/turn.h"
#include "server/core/types.h"
#include "server/lease/events.h"
#include "server/lease/lessor.h"
#include "server/lease/tenants.h"
#include "server/memory/device_map.h"
#include "server/memory/quarantine.h"
#include "server/memory/recycle.h"
#include "server/memory/segments.h"
#include "server/store/committer.h"
#include "server/store/durable.h"

namespace physpool::server {

class Ender {
 public:
  struct Deps {
    const ManagerOptions* options;
    pglist::Pool* pool;
    Lessor* lessor;
    LeaseViews* views;
    Segments* segments;
    DeviceMap* devices;
    Recycler* recycler;
    Quarantine* quarantine;
    EventBus* events;
    Committer* committer;
    DurableLog* durable;
    Coordinator* coordinator;
  };
  explicit Ender(Deps d) : d_(d) {}

  using LeaseDone = std::function<void(absl::StatusOr<LeaseInfo>)>;
  using ReleaseDone = std::function<void(absl::StatusOr<bool>)>;

  // Ends a lease in memory now: events, counters; its allocation stays
  // (being zeroed). Unless `unmapped` (done already), first unmaps it from
  // its tenant's devices.
  Lessor::Lease EndNow(Turn& t, const std::string& id,
                       std::optional<LeaseEventInfo::Kind> kind,
                       const std::string& reason, absl::Time deadline,
                       bool unmapped = false);
  // Records an ended lease's end and its memory as to be zeroed under a
  // new scrub row, retrying until the store takes it; then `recorded(row)`
  // runs in a turn.
  void RecordEnd(Turn& t, const Lessor::Lease& l,
                 std::function<void(Turn&, int64_t row)> recorded);
  // Expiries and EXPIRING warnings due at the turn's time.
  void Expire(Turn& t);

  // The RPCs: the caller's own lease (Release, Renew) or any (Revoke).
  void Release(Turn& t, const Tenant& tenant, const std::string& id,
               ReleaseDone done);
  void Revoke(Turn& t, const std::string& id, const std::string& reason,
              LeaseDone done);
  void Renew(Turn& t, const Tenant& tenant, const std::string& id,
             absl::Duration ttl, LeaseDone done);

  struct Counters {
    uint64_t lease_expirations = 0;
    std::map<std::string, uint64_t> revocations;  // by reason
    uint64_t reclaimed_bytes = 0;
  };
  const Counters& counters() const { return counters_; }
  // Leases up to this size that no view reaches are zeroed in their end's
  // change (Release, Revoke) instead of by the scrub thread afterwards.
  static constexpr uint64_t kInlineZeroBytes = 1 << 20;

 private:
  // Ends an owner's or admin's lease durably first (Release, Revoke).
  void EndDurably(Turn& t, const std::string& id,
                  std::optional<LeaseEventInfo::Kind> kind,
                  const std::string& reason,
                  std::function<void(absl::Status, const LeaseInfo&)> done);
  // The end's record: what its change found (inline zeroing, the unmap).
  struct Outcome;
  void Ended(Turn& t, const std::string& id, int64_t row,
             std::optional<LeaseEventInfo::Kind> kind,
             const std::string& reason, const Outcome& o,
             const absl::Status& s);

  const Deps d_;
  std::map<std::string, std::vector<std::function<void(absl::Status)>>> ending_;
  Counters counters_;
  int64_t next_scrub_row_ = 1;

 public:
  // Store rows of memory to zero are numbered from `first` (at start).
  void SetNextScrubRow(Turn&, int64_t first) { next_scrub_row_ = first; }
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_END_H_
