// SPDX-License-Identifier: Apache-2.0
// Tenants' limits (max_bytes, max_leases) against what they hold: their
// leases, their reclaims in progress, and the memory of their ended leases
// they still reach (quarantined: a tenant that leaks mappings cannot
// exhaust the pool).
//
// State: none.
// Thread safety: not thread-safe; takes the Turn that proves the pool's
// lock (the registry has a lock of its own, taken after the pool's).
// I/O: none.
// REQUIRES: the lessor, views, reclaims and registry outlive it.
#ifndef PHYSPOOL_SERVER_LEASE_QUOTA_H_
#define PHYSPOOL_SERVER_LEASE_QUOTA_H_

#include <cstdint>

#include "absl/status/status.h"
#include "server/core/turn.h"
#include "server/lease/lessor.h"
#include "server/lease/reclaimer.h"
#include "server/lease/tenants.h"
#include "server/memory/lease_views.h"

namespace physpool::server {

class Quota {
 public:
  Quota(const Lessor* lessor, const LeaseViews* views,
        const Reclaimer* reclaims, const TenantRegistry* tenants)
      : lessor_(lessor),
        views_(views),
        reclaims_(reclaims),
        tenants_(tenants) {}

  // OK if `t` may hold `bytes` more (and, `adding`, one more lease);
  // else RESOURCE_EXHAUSTED (FailReason kNeverFits) saying what it holds.
  absl::Status Check(Turn& t, const Tenant& tenant, uint64_t bytes,
                     bool adding) const;

 private:
  const Lessor* const lessor_;
  const LeaseViews* const views_;
  const Reclaimer* const reclaims_;
  const TenantRegistry* const tenants_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_QUOTA_H_
