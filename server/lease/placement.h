// SPDX-License-Identifier: Apache-2.0
// Placement: a request against the pool, now. Quota first, then the core
// (pglist) — on the preferred NUMA node, then any node unless the request
// is strict — and the answer routed: a grant, a reclaim (the aggressive
// path, when the caller allows it and only preemptible leases stand in the
// way), or why not (the caller may wait on some of those reasons).
//
// State: the NUMA fallbacks counted so far (by preferred node).
// Thread safety: not thread-safe; takes the Turn that proves the pool's
// lock.
// I/O: none of its own; a reclaim it starts ends its victims at once, and
// their unmap from their tenants' devices runs under the lock (reclaim.h).
// REQUIRES: the pool, quota, granter, reclaim and `times` outlive it.
#ifndef PHYSPOOL_SERVER_LEASE_PLACEMENT_H_
#define PHYSPOOL_SERVER_LEASE_PLACEMENT_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "pglist/pool.h"
#include "server/core/histogram.h"
#include "server/core/turn.h"
#include "server/lease/grant.h"
#include "server/lease/quota.h"
#include "server/lease/reclaim.h"

namespace physpool::server {

// Appended to a lease's path ("simple+numa-fallback") when its preferred
// NUMA node had no room and a non-strict request was served from any node.
inline constexpr char kNumaFallbackSuffix[] = "+numa-fallback";

class Placement {
 public:
  // `times` receives the core's latency by path.
  Placement(pglist::Pool* pool, Quota* quota, Granter* granter,
            Reclaim* reclaim, PathTimes* times)
      : pool_(pool),
        quota_(quota),
        granter_(granter),
        reclaim_(reclaim),
        times_(times) {}

  enum class Verdict {
    kGranted,     // a grant is being recorded; *done taken
    kReclaiming,  // a reclaim started; *done taken
    kRefused,     // not now: Serve's status says why
  };
  struct Outcome {
    Verdict verdict = Verdict::kRefused;
    absl::Status why;  // kRefused: the reason (FailReasonOf tells its kind)
  };
  // Serves `p` now if it can. `handle`, `deadline` and `since` are the
  // request's, for a reclaim. On kGranted or kReclaiming, *done is moved.
  Outcome Serve(Turn& t, const Tenant& tenant, const AllocateParams& p,
                const std::string& fp, uint64_t handle, absl::Time deadline,
                absl::Time since, AllocDone* done);

  // Grants served off their preferred NUMA node (non-strict requests whose
  // node had no room), by the preferred node.
  const std::map<int32_t, uint64_t>& numa_fallbacks() const {
    return numa_fallbacks_;
  }

 private:
  pglist::Pool* const pool_;
  Quota* const quota_;
  Granter* const granter_;
  Reclaim* const reclaim_;
  PathTimes* const times_;
  std::map<int32_t, uint64_t> numa_fallbacks_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_PLACEMENT_H_
