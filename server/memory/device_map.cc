// SPDX-License-Identifier: Apache-2.0
#include "server/memory/device_map.h"

#include <algorithm>

#include "server/core/log.h"
#include "util/status_macros.h"

namespace physpool::server {

void DeviceMap::Unmap(Turn& t, const std::string& tenant,
                      pglist::AllocationId alloc) {
  if (!HasDevices(tenant)) return;
  if (absl::Status s =
          source_->UnmapLease(tenant, segments_->RangesOf(t, alloc));
      !s.ok()) {
    ++unmap_errors_;
    stuck_.insert(alloc);
    Log(LogLevel::kError,
        "unmapping an ended lease from its tenant's devices failed: its "
        "memory stays out of the pool until a restart reconciles the "
        "domains",
        {F("tenant", tenant), F("error", s.ToString())});
  }
}

void DeviceMap::MapAgain(Turn& t, const std::string& tenant,
                         pglist::AllocationId alloc,
                         const std::string& lease_id) {
  if (absl::Status m = source_->MapLease(tenant, segments_->RangesOf(t, alloc));
      !m.ok()) {
    ++map_errors_;
    Log(LogLevel::kError,
        "a lease whose end was not recorded could not be mapped for its "
        "tenant's devices again",
        {F("lease", lease_id), F("error", m.ToString())});
  }
}

absl::Status DeviceMap::Reconcile(
    Turn&, const std::vector<vfio::MemorySource::LiveLease>& live) {
  ASSIGN_OR_RETURN(const vfio::MemorySource::Reconciled rec,
                   source_->Reconcile(live));
  const std::vector<vfio::DeviceDomain> domains = source_->DeviceDomains();
  if (std::any_of(domains.begin(), domains.end(),
                  [](const vfio::DeviceDomain& d) {
                    return !d.device.tenant.empty();
                  })) {  // tenant domains only: the pool's is not reconciled
    Log(rec.map_errors ? LogLevel::kWarn : LogLevel::kInfo,
        "device domains reconciled",
        {F("kept", rec.kept), F("unmapped", rec.unmapped),
         F("mapped", rec.mapped), F("map_errors", rec.map_errors)});
  }
  return absl::OkStatus();
}

uint64_t DeviceMap::StuckBytes(Turn&) const {
  uint64_t bytes = 0;
  for (pglist::AllocationId a : stuck_) {
    if (const pglist::Allocation* alloc = pool_->Find(a); alloc != nullptr) {
      for (const pglist::PageRun& r : alloc->runs)
        bytes += r.pages.value * pool_->page_size();
    }
  }
  return bytes;
}

}  // namespace physpool::server
