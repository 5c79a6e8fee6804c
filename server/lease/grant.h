// SPDX-License-Identifier: Apache-2.0
// Grants: an allocation the core made becomes a lease — committing (its
// store write in flight, mapped into its tenant's devices by the
// committing thread first), then live once recorded, or dropped (zeroed if
// a device may have written) with UNAVAILABLE or the map's error.
//
// State: the answers waiting on each grant being recorded (a retry with
// the same request id attaches to them).
// Thread safety: not thread-safe; every method takes the Turn that proves
// the pool's lock. The completion re-enters through the Coordinator.
// I/O: the device map and the store write run on the committing thread,
// with no lock. Under the lock: a grant that failed (its map or its store
// write) is unmapped from its tenant's devices in the turn that drops it
// (DropFailed: DeviceMap::Unmap, the kernel), before it is zeroed.
// REQUIRES: the Deps outlive it.
#ifndef PHYSPOOL_SERVER_LEASE_GRANT_H_
#define PHYSPOOL_SERVER_LEASE_GRANT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "pglist/pool.h"
#include "server/core/options.h"
#include "server/core/turn.h"
#include "server/core/types.h"
#include "server/lease/lessor.h"
#include "server/lease/tenants.h"
#include "server/memory/device_map.h"
#include "server/memory/recycle.h"
#include "server/memory/segments.h"
#include "server/store/committer.h"
#include "server/store/durable.h"

namespace physpool::server {

// A lease's store record.
StoredLease ToStored(const LeaseInfo& info,
                     const std::vector<pglist::PageRun>& runs,
                     const std::string& fp);

class Granter {
 public:
  struct Deps {
    const ManagerOptions* options;
    pglist::Pool* pool;
    Lessor* lessor;
    Segments* segments;
    DeviceMap* devices;
    Recycler* recycler;
    Committer* committer;
    DurableLog* durable;
    Coordinator* coordinator;
  };
  explicit Granter(Deps d) : d_(d) {}

  // A new lease of `tenant` over allocation `a` (path `path`): committing
  // now, `done` answered once it is recorded (or not).
  void Grant(Turn& t, const Tenant& tenant, const AllocateParams& p,
             const std::string& fp, const pglist::Allocation& a,
             absl::string_view path, AllocDone done);
  // A lease as its tenant will see it, with a new id and its expiry.
  LeaseInfo MakeInfo(Turn& t, const Tenant& tenant, const AllocateParams& p,
                     const std::vector<pglist::PageRun>& runs, bool preemptible,
                     absl::string_view path);
  // A retry of a request whose grant is being recorded: answered with it.
  void Attach(Turn& t, const std::string& lease_id, AllocDone done);

 private:
  std::string NewLeaseId(Turn& t);
  void Recorded(Turn& t, const std::string& id, const absl::Status& s,
                const absl::Status& mapped);
  // Memory of a grant that failed after (or while) it was mapped:
  // unmapped, then zeroed (the device may have written) and freed.
  void DropFailed(Turn& t, const std::string& tenant,
                  pglist::AllocationId alloc);

  const Deps d_;
  std::map<std::string, std::vector<AllocDone>> granting_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_GRANT_H_
