// SPDX-License-Identifier: Apache-2.0
#include "server/lease/quota.h"

#include "absl/strings/str_cat.h"
#include "pglist/outcome.h"

namespace physpool::server {

using pglist::FailReason;

absl::Status Quota::Check(Turn&, const Tenant& t, uint64_t bytes,
                          bool adding) const {
  TenantUsage u = lessor_->Usage(t.name);
  // Memory the tenant's ended leases still reach counts as its own.
  const uint64_t quarantined = views_->QuarantinedBytesOf(t.name);
  u.bytes += quarantined;
  const TenantUsage pending = reclaims_->Pending(t.name);
  u.bytes += pending.bytes;
  u.leases += pending.leases;
  const TenantLimits limits = tenants_->ByName(t.name).value_or(t).limits;
  const uint32_t more = adding ? 1 : 0;
  const uint64_t more_bytes = adding ? bytes : 0;
  if (limits.max_leases != 0 && u.leases + more > limits.max_leases) {
    return pglist::FailWith(
        absl::StatusCode::kResourceExhausted, FailReason::kNeverFits,
        absl::StrCat("quota: tenant \"", t.name, "\" holds ", u.leases,
                     pending.leases ? " (with reclaims in progress)" : "",
                     " of its ", limits.max_leases, " leases"));
  }
  if (limits.max_bytes != 0 && u.bytes + more_bytes > limits.max_bytes) {
    return pglist::FailWith(
        absl::StatusCode::kResourceExhausted, FailReason::kNeverFits,
        absl::StrCat("quota: tenant \"", t.name, "\" holds ", u.bytes,
                     pending.bytes ? " (with reclaims in progress)" : "",
                     quarantined ? absl::StrCat(" (", quarantined,
                                                " of them quarantined: ended "
                                                "leases it still maps)")
                                 : "",
                     " of its ", limits.max_bytes, " bytes; ", bytes,
                     " more would exceed it"));
  }
  return absl::OkStatus();
}

}  // namespace physpool::server
