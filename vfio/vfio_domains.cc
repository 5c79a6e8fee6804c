// SPDX-License-Identifier: Apache-2.0
// VfioSource's device domain calls: leases' runs cut into pieces at
// physseg boundaries, handed to the tenant domains (DeviceDomains); and
// the pool's half of DeviceDomains().
#include <algorithm>
#include <iterator>
#include <map>

#include "absl/strings/str_cat.h"
#include "vfio/vfio_source.h"

namespace physpool::vfio {

bool VfioSource::HasDevices(const std::string& tenant) const {
  return domains_.HasDevices(tenant);
}

absl::StatusOr<std::vector<DmaPiece>> VfioSource::PiecesOf(
    const std::vector<ViewRange>& runs) const {
  std::vector<DmaPiece> out;
  absl::MutexLock l(&mu_);
  for (const ViewRange& r : runs) {
    uint64_t iova = r.iova;
    const uint64_t end = r.iova + r.bytes;
    while (iova < end) {
      auto it = mapped_.upper_bound(iova);
      if (it == mapped_.begin() ||
          iova - std::prev(it)->first >= std::prev(it)->second.backing.bytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "[", Hex(r.iova), ", +", r.bytes, ") is not inside the segments"));
      }
      --it;
      const uint64_t seg_end = it->first + it->second.backing.bytes;
      const uint64_t bytes = std::min(end, seg_end) - iova;
      out.push_back({iova, bytes, it->first,
                     it->second.backing.base + (iova - it->first)});
      iova += bytes;
    }
  }
  return out;
}

absl::Status VfioSource::MapLease(const std::string& tenant,
                                  const std::vector<ViewRange>& runs) {
  if (!HasDevices(tenant)) return absl::OkStatus();
  absl::StatusOr<std::vector<DmaPiece>> pieces = PiecesOf(runs);
  if (!pieces.ok()) return pieces.status();
  // The pool's container pins every physseg too (counted only without
  // CAP_IPC_LOCK). Summed here, before DeviceDomains takes its lock, so
  // that the two locks are never held together: the segments change only
  // through the server's serialised AddSegment / RemoveSegment (and the
  // domains' lock never guarded them), so the sum is the one Map would
  // have read under its lock.
  uint64_t pool_pinned = 0;
  if (!memlock_.cap_ipc_lock && container_ >= 0) {
    absl::MutexLock m(&mu_);
    for (const auto& [iova, seg] : mapped_) pool_pinned += seg.backing.bytes;
  }
  return domains_.Map(tenant, *pieces, memlock_, pool_pinned);
}

absl::Status VfioSource::UnmapLease(const std::string& tenant,
                                    const std::vector<ViewRange>& runs) {
  if (!HasDevices(tenant)) return absl::OkStatus();
  absl::StatusOr<std::vector<DmaPiece>> pieces = PiecesOf(runs);
  if (!pieces.ok()) return pieces.status();
  return domains_.Unmap(tenant, *pieces);
}

absl::StatusOr<MemorySource::Reconciled> VfioSource::Reconcile(
    const std::vector<LiveLease>& live) {
  std::map<std::string, std::vector<DmaPiece>> want;  // by tenant
  for (const LiveLease& l : live) {
    if (!HasDevices(l.tenant)) continue;
    absl::StatusOr<std::vector<DmaPiece>> pieces = PiecesOf(l.runs);
    if (!pieces.ok()) return pieces.status();
    std::vector<DmaPiece>& w = want[l.tenant];
    w.insert(w.end(), pieces->begin(), pieces->end());
  }
  return domains_.Reconcile(want);
}

std::vector<DeviceDomain> VfioSource::DeviceDomains() const {
  std::vector<DeviceDomain> out;
  uint64_t pool_maps = 0, pool_bytes = 0;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [iova, m] : mapped_) {
      ++pool_maps;
      pool_bytes += m.backing.bytes;
    }
  }
  for (const VfioDevice& dev : config_.devices) {
    DeviceDomain dd;
    dd.device = dev;
    if (dev.tenant.empty()) {
      dd.domain = "pool";
      if (container_ >= 0) {
        dd.mappings = pool_maps;
        dd.mapped_bytes = pool_bytes;
      }
      dd.dma_avail = dma_avail_;
    }
    out.push_back(dd);
  }
  domains_.Describe(&out);  // the tenant devices
  return out;
}

}  // namespace physpool::vfio
