// SPDX-License-Identifier: Apache-2.0
// DeviceDomains: the IOMMU domains of tenant devices (docs/vfio.md,
// "Device domains"). Each IOMMU group of one tenant's devices gets a type1
// container of its own, into which that tenant's leases are mapped (and
// nothing else), at the same IOVAs as in the pool's container. Pool-wide
// devices are not here: they share the pool's container (VfioSource).
//
// State: per group, the domain's tenant, container, devices, DMA entries
// left and what is mapped (iova -> bytes); the tenant containers taken
// from physpool-keeper at start and not yet adopted; the set of tenants
// that own devices (fixed at construction).
// Thread safety: HasDevices, Map, Unmap, Reconcile and Describe are
// thread-safe (one lock of its own, under which nothing else is locked).
// The start steps (TakeStashed, Open, AddDevice, Adopt, Containers,
// SetDmaAvail) and Teardown are called by VfioSource::Start and its
// destructor only, never concurrently with anything else.
// I/O: the kernel's VFIO calls (containers, GET_INFO), and MAP_DMA /
// UNMAP_DMA through StashOps (physpool-keeper's, with one), under the lock.
// Requires: the kernel and the StashOps outlive it; the group fds given to
// Open stay open while it lives (VfioSource owns them).
#ifndef PHYSPOOL_VFIO_DEVICE_DOMAINS_H_
#define PHYSPOOL_VFIO_DEVICE_DOMAINS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "vfio/kernel.h"
#include "vfio/memory_source.h"
#include "vfio/stash_ops.h"
#include "vfio/undo.h"

namespace physpool::vfio {

class DeviceDomains {
 public:
  // `devices` are all of the source's (those with a tenant count).
  // `notice` (may be null) receives warnings worth logging.
  DeviceDomains(const std::vector<VfioDevice>& devices, Kernel* kernel,
                StashOps* ops, std::function<void(const std::string&)> notice);
  DeviceDomains(const DeviceDomains&) = delete;
  DeviceDomains& operator=(const DeviceDomains&) = delete;

  // Whether `tenant` has devices of its own (its leases are mapped).
  bool HasDevices(const std::string& tenant) const;

  // Start, with physpool-keeper: the container of tenant group `group`
  // the keeper holds, for Adopt. Owned from now on.
  void TakeStashed(int group, int container);
  // Start, fresh: opens the container of tenant device `d`'s group
  // `group` (whose fd is `group_fd`), stashes it, puts the group in it
  // and sets the type1v2 IOMMU; `undo` gets the steps to undo.
  absl::Status Open(const VfioDevice& d, int group, int group_fd, Undo* undo);
  // Start, fresh: device `bdf` shares group `group` (opened) with an
  // earlier device of the same tenant.
  void AddDevice(int group, const std::string& bdf);
  // Start, with physpool-keeper: the domain of each tenant device of
  // `devices` (its group in `group_of`, by bdf) is the container the
  // keeper holds (TakeStashed); FAILED_PRECONDITION if it holds none.
  absl::Status Adopt(const std::vector<VfioDevice>& devices,
                     const std::map<std::string, int>& group_of);
  // Start: the domains' containers, and what GET_INFO reported of one.
  std::vector<int> Containers() const;
  void SetDmaAvail(int container, int64_t dma_avail);

  // MemorySource::MapLease for a tenant with devices, its runs cut into
  // `pieces`: maps each piece into each of the tenant's domains, all or
  // nothing. RESOURCE_EXHAUSTED up front if a domain lacks the DMA
  // entries, or, without CAP_IPC_LOCK, if `memlock` cannot take the pages
  // once more per domain on top of what the domains and `pool_pinned` (the
  // pool's container) pin.
  absl::Status Map(const std::string& tenant,
                   const std::vector<DmaPiece>& pieces, const Memlock& memlock,
                   uint64_t pool_pinned);
  // MemorySource::UnmapLease: unmaps what of `pieces` is mapped in the
  // tenant's domains; a piece whose unmap fails stays recorded (the first
  // error is returned).
  absl::Status Unmap(const std::string& tenant,
                     const std::vector<DmaPiece>& pieces);
  // MemorySource::Reconcile: makes each domain map exactly `want` (the
  // pieces of its tenant's live leases, by tenant).
  absl::StatusOr<MemorySource::Reconciled> Reconcile(
      const std::map<std::string, std::vector<DmaPiece>>& want);
  // Fills in the domain, mappings, mapped bytes and DMA entries left of
  // each tenant device in `out` (entries of pool-wide devices are left).
  void Describe(std::vector<DeviceDomain>* out) const;

  // Closes every container; unless `keep` (physpool-keeper keeps the
  // mappings), unmaps what is mapped first.
  void Teardown(bool keep);

 private:
  // The IOMMU domain (type1 container) of one IOMMU group of one tenant's
  // devices.
  struct Domain {
    std::string tenant;
    int group = -1;
    int container = -1;
    std::vector<std::string> bdfs;
    int64_t dma_avail = -1;             // entries left; -1: not reported
    std::map<uint64_t, uint64_t> maps;  // what is mapped: iova -> bytes
    uint64_t mapped_bytes = 0;
  };
  // Map's up-front checks, over the tenant's domains; sets `*domains` to
  // how many there are.
  absl::Status CheckRoom(const std::string& tenant,
                         const std::vector<DmaPiece>& pieces,
                         const Memlock& memlock, uint64_t pool_pinned,
                         int* domains) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reconcile for the domain of group `g`: `want` are its tenant's pieces.
  absl::Status ReconcileDomain(int g, Domain& d,
                               const std::vector<DmaPiece>& want,
                               MemorySource::Reconciled* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Kernel* const kernel_;
  StashOps* const ops_;
  const std::function<void(const std::string&)> notice_;
  const std::set<std::string> tenants_;  // tenants that own devices

  // Tenant domains, by group; their set is fixed by Start.
  mutable absl::Mutex mu_;
  std::map<int, Domain> domains_ ABSL_GUARDED_BY(mu_);
  // From the stash at Start: tenant containers, by group.
  std::map<int, int> stashed_;
};

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_DEVICE_DOMAINS_H_
