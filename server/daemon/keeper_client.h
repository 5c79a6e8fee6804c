// SPDX-License-Identifier: Apache-2.0
// physpool-keeper's protocol and the daemon's side of it (docs/vfio.md,
// "Restart with isolation on").
//
// physpool-keeper is a small process that holds descriptors for physpoold
// so that they outlive a crash or kill -9 of the daemon. It listens on a
// SOCK_SEQPACKET unix socket in a private directory and serves only peers
// of its own uid or root (SO_PEERCRED, checked before anything is read).
// Messages are one datagram of text, with at most one descriptor
// (SCM_RIGHTS):
//   keeper -> client on connect: "HELLO <instance>"  (random per keeper run)
//   "PUT <name>" + fd   -> "OK" | "ERR <why>"
//   "DROP <name>"       -> "OK"
//   "LIST"              -> "FD <name>" + fd, one per entry, then "END"
//   "MAP <container> <memfd> <offset> <iova> <bytes>" -> "OK" | "ERR <why>"
//                          | "ERRNO <n> <why>" (the kernel's errno)
//   "UNMAP <container> <iova> <bytes>" -> "OK <bytes unmapped>" | "ERR..."
//   "MAPS <container>"  -> "M <iova>:<bytes> ..." (up to 512 a message),
//                          then "END"
// MAP and UNMAP are the keeper's own VFIO_IOMMU_MAP_DMA / UNMAP_DMA, from a
// mapping of the kept memfd in the keeper: mappings made by the keeper
// belong to its address space, which outlives the daemon (type1 lets only
// the process that made a mapping unmap it).
//
// State: KeeperClient's connected socket, the keeper's instance and pid.
// Thread safety: KeeperClient is thread-safe (its own mutex: one call at a
// time on the socket); the free functions keep no state.
// I/O: the keeper's socket; each call waits for its answer (at most 5 s a
// send or a receive: SO_SNDTIMEO, SO_RCVTIMEO); Connect retries for up to
// `wait`. The vfio source calls it (its FdStash) for what it keeps and
// maps, among them a view's creation or destruction and a tenant's device
// map or unmap, which may run under the pool's lock (the named exceptions,
// pool_manager.h).
// REQUIRES: nothing; a descriptor given to Put stays the caller's.
#ifndef PHYSPOOL_SERVER_KEEPER_CLIENT_H_
#define PHYSPOOL_SERVER_KEEPER_CLIENT_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "vfio/fd_stash.h"

namespace physpool::server {

// One datagram: text and, if fd >= 0, a descriptor.
absl::Status SendKeeperMessage(int sock, const std::string& text, int fd);
// Receives one datagram; *fd is the descriptor it carried or -1.
// DEADLINE_EXCEEDED after the socket's SO_RCVTIMEO; UNAVAILABLE if the peer
// closed.
absl::StatusOr<std::string> RecvKeeperMessage(int sock, int* fd);
// Whether `name` may name a kept descriptor.
bool ValidKeeperName(const std::string& name);

class KeeperClient final : public vfio::FdStash {
 public:
  // Connects to the keeper at `path`, retrying until `wait` has passed (a
  // keeper started beside the daemon may not listen yet). UNAVAILABLE
  // naming the path and what to do.
  static absl::StatusOr<std::unique_ptr<KeeperClient>> Connect(
      const std::string& path, absl::Duration wait);
  ~KeeperClient() override;

  std::string instance() const override { return instance_; }
  // The keeper's pid (SO_PEERCRED): its descriptors are no tenant's.
  pid_t pid() const { return pid_; }
  absl::Status Put(const std::string& name, int fd) override;
  absl::Status Drop(const std::string& name) override;
  absl::StatusOr<std::map<std::string, int>> List() override;
  absl::Status MapDma(const std::string& container, const std::string& memfd,
                      uint64_t offset, uint64_t iova, uint64_t bytes) override;
  absl::StatusOr<uint64_t> UnmapDma(const std::string& container, uint64_t iova,
                                    uint64_t bytes) override;
  absl::StatusOr<std::map<uint64_t, uint64_t>> Mappings(
      const std::string& container) override;

 private:
  KeeperClient(int sock, std::string path, std::string instance, pid_t pid)
      : sock_(sock),
        path_(std::move(path)),
        instance_(std::move(instance)),
        pid_(pid) {}
  // One request and its answer: the text after "OK" ("" for a bare OK).
  absl::StatusOr<std::string> Call(const std::string& text, int fd);

  absl::Mutex mu_;  // one call at a time on sock_
  const int sock_;
  const std::string path_;
  const std::string instance_;
  const pid_t pid_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_KEEPER_CLIENT_H_
