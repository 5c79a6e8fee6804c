// SPDX-License-Identifier: Apache-2.0
// StashOps: the calls the vfio source makes through physpool-keeper's
// FdStash (fd_stash.h) when there is one, and otherwise straight to the
// Kernel: stashing a descriptor under its name, and MAP_DMA / UNMAP_DMA of
// a container, which with a keeper must be the keeper's own (type1 lets
// only the process that made a mapping unmap it). Also the stash names of
// physseg memfds and tenant containers. Shared by VfioSource and
// DeviceDomains.
//
// State: none of its own (the kernel, the stash or null, the notice sink).
// Thread safety: thread-safe as far as the Kernel and the FdStash are (the
// keeper's client serialises its calls).
// I/O: the kernel's VFIO ioctls, or a round trip to physpool-keeper.
// Requires: the kernel and the stash outlive it.
#ifndef PHYSPOOL_VFIO_STASH_OPS_H_
#define PHYSPOOL_VFIO_STASH_OPS_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "vfio/fd_stash.h"
#include "vfio/kernel.h"

namespace physpool::vfio {

// One MAP_DMA's worth of a lease: a run's part inside one physseg.
struct DmaPiece {
  uint64_t iova = 0;
  uint64_t bytes = 0;
  uint64_t seg_iova = 0;  // the physseg's IOVA (its memfd's stash name)
  const uint8_t* vaddr = nullptr;  // in the daemon's mapping
};

class StashOps {
 public:
  // `stash` may be null (no keeper). `notice` (may be null) receives
  // warnings worth logging.
  StashOps(Kernel* kernel, FdStash* stash,
           std::function<void(const std::string&)> notice);

  FdStash* stash() const { return stash_; }

  // The stash name of the memfd of the physseg at `iova` ("seg-<hex>").
  static std::string SegmentKey(uint64_t iova);
  // The stash name of the container of tenant IOMMU group `group`.
  static std::string DomainKey(int group);

  // Stashes a duplicate of `fd` under `name` (no-op without a stash).
  absl::Status Stash(const std::string& name, int fd);
  // Drops `name` from the stash (no-op without one); a failure is a notice.
  void Unstash(const std::string& name);
  // MAP_DMA / UNMAP_DMA of a container stashed as `key`, through the stash
  // when there is one. UnmapIova fails unless exactly `bytes` went.
  absl::Status MapIova(const std::string& key, int container,
                       const DmaPiece& p);
  absl::Status UnmapIova(const std::string& key, int container, uint64_t iova,
                         uint64_t bytes);

 private:
  Kernel* const kernel_;
  FdStash* const stash_;
  const std::function<void(const std::string&)> notice_;
};

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_STASH_OPS_H_
