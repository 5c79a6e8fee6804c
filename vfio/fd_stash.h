// SPDX-License-Identifier: Apache-2.0
// A place outside the daemon that keeps descriptors open across its death
// (docs/vfio.md, "Restart with isolation on"): physpool-keeper, reached over
// a unix socket (server/daemon/keeper_client.h). The vfio source stashes its
// container, groups, device fds, memfd backing and per-lease udmabufs there,
// so that a kill -9 of physpoold leaves the memory allocated, pinned and
// mapped in the IOMMU, and the next daemon takes the same objects back.
#ifndef PHYSPOOL_VFIO_FD_STASH_H_
#define PHYSPOOL_VFIO_FD_STASH_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace physpool::vfio {

class FdStash {
 public:
  virtual ~FdStash() = default;

  // Identifies what the stash holds: it changes when the holder restarts
  // (and everything it held is gone). Part of the lease store's boot id.
  virtual std::string instance() const = 0;

  // Keeps a duplicate of `fd` under `name` (letters, digits, '.', '-', '_',
  // ':'), replacing one of that name. The caller keeps `fd`.
  virtual absl::Status Put(const std::string& name, int fd) = 0;
  // Closes the descriptor kept under `name`; OK if there is none.
  virtual absl::Status Drop(const std::string& name) = 0;
  // Duplicates of everything kept, by name; the caller owns (closes) them.
  virtual absl::StatusOr<std::map<std::string, int>> List() = 0;

  // The holder's own VFIO_IOMMU_MAP_DMA of [iova, iova + bytes) in the
  // container kept under `container`, onto `bytes` at `offset` of the
  // memfd kept under `memfd`, and its UNMAP_DMA (returns the bytes
  // unmapped). type1 lets only the process that made a mapping unmap it,
  // so mappings that must outlive the daemon, and be undone by a later
  // one, are made by the holder. Errors keep the kernel's errno.
  virtual absl::Status MapDma(const std::string& container,
                              const std::string& memfd, uint64_t offset,
                              uint64_t iova, uint64_t bytes) = 0;
  virtual absl::StatusOr<uint64_t> UnmapDma(const std::string& container,
                                            uint64_t iova, uint64_t bytes) = 0;
  // What the holder mapped in `container` and has not unmapped, as
  // iova -> bytes (empty for a container it never mapped into).
  virtual absl::StatusOr<std::map<uint64_t, uint64_t>> Mappings(
      const std::string& container) = 0;
};

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_FD_STASH_H_
