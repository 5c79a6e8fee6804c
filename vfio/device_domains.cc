// SPDX-License-Identifier: Apache-2.0
#include "vfio/device_domains.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace physpool::vfio {

DeviceDomains::DeviceDomains(const std::vector<VfioDevice>& devices,
                             Kernel* kernel, StashOps* ops,
                             std::function<void(const std::string&)> notice)
    : kernel_(kernel),
      ops_(ops),
      notice_(std::move(notice)),
      tenants_([&devices] {
        std::set<std::string> out;
        for (const VfioDevice& d : devices)
          if (!d.tenant.empty()) out.insert(d.tenant);
        return out;
      }()) {}

bool DeviceDomains::HasDevices(const std::string& tenant) const {
  return !tenant.empty() && tenants_.count(tenant) > 0;
}

void DeviceDomains::TakeStashed(int group, int container) {
  stashed_[group] = container;
}

absl::Status DeviceDomains::Open(const VfioDevice& d, int group, int group_fd,
                                 Undo* undo) {
  absl::StatusOr<int> container = kernel_->OpenContainer();
  if (!container.ok()) return container.status();
  {
    absl::MutexLock l(&mu_);
    Domain& dom = domains_[group];
    dom.tenant = d.tenant;
    dom.group = group;
    dom.container = *container;
    dom.bdfs = {d.bdf};
  }
  undo->Push([this, group] {
    absl::MutexLock l(&mu_);
    kernel_->Close(domains_[group].container);
    domains_.erase(group);
  });
  if (absl::Status s = ops_->Stash(StashOps::DomainKey(group), *container);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = kernel_->SetContainer(group_fd, *container); !s.ok()) {
    return Annotate(s, "device " + d.bdf);
  }
  return kernel_->SetIommuType1v2(*container);
}

void DeviceDomains::AddDevice(int group, const std::string& bdf) {
  absl::MutexLock l(&mu_);
  domains_[group].bdfs.push_back(bdf);
}

absl::Status DeviceDomains::Adopt(const std::vector<VfioDevice>& devices,
                                  const std::map<std::string, int>& group_of) {
  for (const VfioDevice& d : devices) {
    if (d.tenant.empty()) continue;
    const int group = group_of.at(d.bdf);
    absl::MutexLock l(&mu_);
    if (domains_.count(group)) {
      domains_[group].bdfs.push_back(d.bdf);
      continue;
    }
    auto kept = stashed_.find(group);
    if (kept == stashed_.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "physpool-keeper holds no container for IOMMU group ", group,
          " (device ", d.bdf, " of tenant \"", d.tenant,
          "\"): the devices changed since the keeper's domains were "
          "made; stop physpool-keeper (the leases go) and start again"));
    }
    Domain& dom = domains_[group];
    dom.tenant = d.tenant;
    dom.group = group;
    dom.container = kept->second;
    dom.bdfs = {d.bdf};
    stashed_.erase(kept);
  }
  return absl::OkStatus();
}

std::vector<int> DeviceDomains::Containers() const {
  std::vector<int> out;
  absl::MutexLock l(&mu_);
  for (const auto& [g, dom] : domains_) out.push_back(dom.container);
  return out;
}

void DeviceDomains::SetDmaAvail(int container, int64_t dma_avail) {
  absl::MutexLock l(&mu_);
  for (auto& [g, dom] : domains_)
    if (dom.container == container) dom.dma_avail = dma_avail;
}

absl::Status DeviceDomains::CheckRoom(const std::string& tenant,
                                      const std::vector<DmaPiece>& pieces,
                                      const Memlock& memlock,
                                      uint64_t pool_pinned,
                                      int* domains) const {
  uint64_t bytes = 0;
  for (const DmaPiece& p : pieces) bytes += p.bytes;
  *domains = 0;
  for (const auto& [g, d] : domains_) {
    if (d.tenant != tenant) continue;
    ++*domains;
    if (d.dma_avail >= 0 && static_cast<int64_t>(pieces.size()) > d.dma_avail) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the lease needs ", pieces.size(),
          " DMA mappings in the IOMMU domain of group ", g, " (device ",
          d.bdfs.front(), " of tenant \"", tenant, "\"), which has ",
          d.dma_avail,
          " left (vfio_iommu_type1 dma_entry_limit): release leases, ask for "
          "fewer runs (contiguous), or raise dma_entry_limit"));
    }
  }
  // With CAP_IPC_LOCK the kernel does not count pinned pages.
  if (memlock.cap_ipc_lock) return absl::OkStatus();
  uint64_t pinned = 0;
  for (const auto& [g, d] : domains_) pinned += d.mapped_bytes;
  pinned += pool_pinned;
  if (memlock.limit < pinned || memlock.limit - pinned < bytes * *domains) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "mapping the lease for tenant \"", tenant, "\"'s devices pins ",
        bytes * *domains, " more bytes; RLIMIT_MEMLOCK is ", memlock.limit,
        " and ", pinned,
        " are pinned (each domain pins its own): raise it or grant "
        "CAP_IPC_LOCK"));
  }
  return absl::OkStatus();
}

absl::Status DeviceDomains::Map(const std::string& tenant,
                                const std::vector<DmaPiece>& pieces,
                                const Memlock& memlock, uint64_t pool_pinned) {
  absl::MutexLock l(&mu_);
  // Up front: a lease the domains cannot take maps nothing.
  int domains = 0;
  if (absl::Status s =
          CheckRoom(tenant, pieces, memlock, pool_pinned, &domains);
      !s.ok()) {
    return s;
  }
  std::vector<std::pair<Domain*, const DmaPiece*>> done;
  for (auto& [g, d] : domains_) {
    if (d.tenant != tenant) continue;
    for (const DmaPiece& p : pieces) {
      absl::Status s = ops_->MapIova(StashOps::DomainKey(g), d.container, p);
      if (!s.ok()) {
        for (auto it = done.rbegin(); it != done.rend(); ++it) {
          auto [dom, q] = *it;
          if (ops_->UnmapIova(StashOps::DomainKey(dom->group), dom->container,
                              q->iova, q->bytes)
                  .ok()) {
            dom->maps.erase(q->iova);
            dom->mapped_bytes -= q->bytes;
            if (dom->dma_avail >= 0) ++dom->dma_avail;
          }
        }
        return Annotate(
            s, absl::StrCat("mapping the lease for device ", d.bdfs.front(),
                            " of tenant \"", tenant, "\""));
      }
      d.maps[p.iova] = p.bytes;
      d.mapped_bytes += p.bytes;
      if (d.dma_avail >= 0) --d.dma_avail;
      done.push_back({&d, &p});
    }
  }
  return absl::OkStatus();
}

absl::Status DeviceDomains::Unmap(const std::string& tenant,
                                  const std::vector<DmaPiece>& pieces) {
  absl::Status first;
  absl::MutexLock l(&mu_);
  for (auto& [g, d] : domains_) {
    if (d.tenant != tenant) continue;
    for (const DmaPiece& p : pieces) {
      auto it = d.maps.find(p.iova);
      if (it == d.maps.end()) continue;  // not mapped (a failed grant)
      absl::Status s = ops_->UnmapIova(StashOps::DomainKey(g), d.container,
                                       p.iova, it->second);
      if (!s.ok()) {
        if (first.ok()) first = s;
        continue;  // still mapped: stays recorded, to be retried
      }
      d.mapped_bytes -= it->second;
      d.maps.erase(it);
      if (d.dma_avail >= 0) ++d.dma_avail;
    }
  }
  return first;
}

absl::StatusOr<MemorySource::Reconciled> DeviceDomains::Reconcile(
    const std::map<std::string, std::vector<DmaPiece>>& want) {
  static const std::vector<DmaPiece> kNone;
  MemorySource::Reconciled out;
  absl::MutexLock lock(&mu_);
  for (auto& [g, d] : domains_) {
    auto w = want.find(d.tenant);
    if (absl::Status s =
            ReconcileDomain(g, d, w == want.end() ? kNone : w->second, &out);
        !s.ok()) {
      return s;
    }
  }
  return out;
}

absl::Status DeviceDomains::ReconcileDomain(int g, Domain& d,
                                            const std::vector<DmaPiece>& want,
                                            MemorySource::Reconciled* out) {
  // What is mapped now: the stash knows what it mapped (a previous
  // daemon's work); without one the container is new and empty.
  std::map<uint64_t, uint64_t> have = d.maps;
  if (ops_->stash() != nullptr) {
    absl::StatusOr<std::map<uint64_t, uint64_t>> kept =
        ops_->stash()->Mappings(StashOps::DomainKey(g));
    if (!kept.ok()) {
      return absl::UnavailableError(
          absl::StrCat("cannot list the keeper's mappings of group ", g, ": ",
                       kept.status().message()));
    }
    have = *kept;
  }
  std::map<uint64_t, const DmaPiece*> wanted;
  for (const DmaPiece& p : want) wanted[p.iova] = &p;
  d.maps.clear();
  d.mapped_bytes = 0;
  for (const auto& [iova, bytes] : have) {
    auto w = wanted.find(iova);
    if (w != wanted.end() && w->second->bytes == bytes) {
      d.maps[iova] = bytes;
      d.mapped_bytes += bytes;
      ++out->kept;
      continue;
    }
    if (absl::Status s =
            ops_->UnmapIova(StashOps::DomainKey(g), d.container, iova, bytes);
        !s.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot unmap a mapping that no live lease of tenant \"", d.tenant,
          "\" needs from the domain of group ", g, ": ", s.message()));
    }
    ++out->unmapped;
  }
  for (const auto& [iova, p] : wanted) {
    if (d.maps.count(iova)) continue;
    if (absl::Status s = ops_->MapIova(StashOps::DomainKey(g), d.container, *p);
        !s.ok()) {
      ++out->map_errors;
      if (notice_) {
        notice_(absl::StrCat("cannot map [", Hex(iova), ", +", p->bytes,
                             ") of a live lease into the domain of group ", g,
                             ": ", s.message()));
      }
      continue;
    }
    d.maps[iova] = p->bytes;
    d.mapped_bytes += p->bytes;
    ++out->mapped;
  }
  if (absl::StatusOr<IommuInfo> info = kernel_->GetIommuInfo(d.container);
      info.ok()) {
    d.dma_avail = info->dma_avail;
  }
  return absl::OkStatus();
}

void DeviceDomains::Describe(std::vector<DeviceDomain>* out) const {
  absl::MutexLock l(&mu_);
  for (DeviceDomain& dd : *out) {
    if (dd.device.tenant.empty()) continue;
    for (const auto& [g, d] : domains_) {
      if (std::find(d.bdfs.begin(), d.bdfs.end(), dd.device.bdf) ==
          d.bdfs.end())
        continue;
      dd.domain = absl::StrCat("group-", g);
      dd.mappings = d.maps.size();
      dd.mapped_bytes = d.mapped_bytes;
      dd.dma_avail = d.dma_avail;
    }
  }
}

void DeviceDomains::Teardown(bool keep) {
  {
    absl::MutexLock l(&mu_);
    for (auto& [group, d] : domains_) {
      if (!keep) {
        for (const auto& [iova, bytes] : d.maps)
          (void)kernel_->UnmapDma(d.container, iova, bytes);
      }
      kernel_->Close(d.container);
    }
    domains_.clear();
  }
  for (const auto& [group, fd] : stashed_) kernel_->Close(fd);
  stashed_.clear();
}

}  // namespace physpool::vfio
