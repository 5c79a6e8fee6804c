// A place outside the daemon that keeps descriptors open across its death
// (docs/vfio.md, "Restart with isolation on"): physpool-keeper, reached over
// a unix socket (server/keeper_client.h). The vfio source stashes its
// container, groups, device fds, memfd backing and per-lease udmabufs there,
// so that a kill -9 of physpoold leaves the memory allocated, pinned and
// mapped in the IOMMU, and the next daemon takes the same objects back.
#ifndef PHYSPOOL_VFIO_FD_STASH_H_
#define PHYSPOOL_VFIO_FD_STASH_H_

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
};

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_FD_STASH_H_
