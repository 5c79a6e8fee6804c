// SPDX-License-Identifier: Apache-2.0
// physpool-keeper's store of descriptors (protocol: keeper_client.h): what
// it holds for physpoold across the daemon's restarts — the VFIO
// container, groups and devices, each physseg's memfd, each lease's
// udmabuf — and the DMA mappings it makes into kept containers on the
// daemon's behalf, so that a later daemon can undo them.
//
// State: the kept descriptors by name, the keeper's own mappings of kept
// memfds, and the DMA mappings it made into each kept container.
// Thread safety: not thread-safe: the keeper's single loop owns it.
// I/O: the daemon's connections (a 5 s send timeout; a receive waits for
// its message), mmap of kept memfds, VFIO_IOMMU_MAP_DMA / UNMAP_DMA on
// kept containers (vfio::LinuxKernel).
// REQUIRES: Serve only a connection Accept took, once it is readable (else
// it waits for a message).
#ifndef PHYSPOOL_SERVER_KEEPER_SERVER_H_
#define PHYSPOOL_SERVER_KEEPER_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace physpool::server {

class KeeperServer {
 public:
  // `instance` greets every connection (the store's boot id includes it);
  // `say` logs what the keeper refuses.
  KeeperServer(std::string instance,
               std::function<void(const std::string&)> say);
  // Closes and unmaps everything it holds.
  ~KeeperServer();

  // How many descriptors it holds.
  size_t size() const;
  // A new connection: only a peer of the keeper's own uid (or root) is
  // served; it is greeted with the instance. false: closed.
  bool Accept(int conn);
  // Serves one message of `conn`; false when the connection is done.
  bool Serve(int conn);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_KEEPER_SERVER_H_
