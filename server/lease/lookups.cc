// SPDX-License-Identifier: Apache-2.0
#include "server/lease/lookups.h"

#include "absl/strings/str_cat.h"
#include "server/memory/holders.h"

namespace physpool::server {

absl::StatusOr<LeaseInfo> Lookups::Get(Turn&, const Tenant& t,
                                       absl::string_view id) const {
  auto lease = lessor_->Owned(t.name, std::string(id), t.lease_scope);
  if (!lease.ok()) {
    // Ended is ended; the owner also learns why the memory is not back.
    const LeaseViews::View* v = views_->FindLease(std::string(id));
    if (v != nullptr && v->ended && v->info.tenant == t.name &&
        t.lease_scope.empty() &&
        lease.status().code() == absl::StatusCode::kNotFound) {
      const std::string who = Describe(v->holders);
      return absl::NotFoundError(absl::StrCat(
          lease.status().message(), "; its ", v->info.bytes,
          " bytes are quarantined until its view is unmapped",
          who.empty() ? "" : " (held by ", who, who.empty() ? "" : ")"));
    }
    return lease.status();
  }
  return (*lease)->info;
}

absl::StatusOr<LeaseInfo> Lookups::AdminGet(Turn&, absl::string_view id) const {
  const std::string key(id);
  if (const Lessor::Lease* lease = lessor_->Find(key);
      lease != nullptr && lease->state != Lessor::State::kCommitting) {
    return lease->info;
  }
  const LeaseViews::View* v = views_->FindLease(key);
  if (v != nullptr && v->ended) return quarantine_->Quarantined(*v);
  return absl::NotFoundError(
      absl::StrCat("lease ", id, " is neither live nor quarantined"));
}

std::vector<LeaseInfo> Lookups::Leases(Turn&,
                                       const std::optional<std::string>& tenant,
                                       const std::string& after,
                                       size_t max) const {
  std::vector<LeaseInfo> out;
  if (max == 0) return out;
  lessor_->ForEachFrom(after, [&](const Lessor::Lease& lease) {
    if (!tenant || lease.info.tenant == *tenant) out.push_back(lease.info);
    return out.size() < max;
  });
  return out;
}

}  // namespace physpool::server
