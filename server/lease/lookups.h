// SPDX-License-Identifier: Apache-2.0
// Reading leases: a tenant's own (its quarantined ones say why their
// memory is not back, and who holds it), any lease for an admin (live or
// quarantined), and pages of live leases in id order.
//
// State: none.
// Thread safety: not thread-safe; every method takes the Turn that proves
// the pool's lock.
// I/O: none (the holders are those the quarantine last found).
// REQUIRES: the lessor, views and quarantine outlive it.
#ifndef PHYSPOOL_SERVER_LEASE_LOOKUPS_H_
#define PHYSPOOL_SERVER_LEASE_LOOKUPS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/turn.h"
#include "server/lease/lessor.h"
#include "server/lease/tenants.h"
#include "server/memory/lease_views.h"
#include "server/memory/quarantine.h"

namespace physpool::server {

class Lookups {
 public:
  Lookups(Lessor* lessor, LeaseViews* views, const Quarantine* quarantine)
      : lessor_(lessor), views_(views), quarantine_(quarantine) {}

  absl::StatusOr<LeaseInfo> Get(Turn& t, const Tenant& tenant,
                                absl::string_view id) const;
  absl::StatusOr<LeaseInfo> AdminGet(Turn& t, absl::string_view id) const;
  std::vector<LeaseInfo> Leases(Turn& t,
                                const std::optional<std::string>& tenant,
                                const std::string& after, size_t max) const;

 private:
  Lessor* const lessor_;
  LeaseViews* const views_;
  const Quarantine* const quarantine_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_LOOKUPS_H_
