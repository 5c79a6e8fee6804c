// SPDX-License-Identifier: Apache-2.0
// One daemon per store and per pool: physpoold takes an exclusive lock on a
// file beside each thing it owns (the lease store, the sim directory, the
// keeper's socket) before it opens, restores or zeroes anything. A second
// daemon with the same config (other sockets or TCP ports, the same store
// or memory) is refused at once, naming the holder's pid; two started at
// the same moment cannot both pass (fcntl record locks are taken
// atomically by the kernel, and are released by it when the holder dies,
// so a crash leaves no stale lock).
//
// State: the locked files' descriptors.
// Thread safety: not thread-safe; hold it for the life of the daemon.
// I/O: creates each file, locks it (fcntl F_SETLK) and writes the pid in
// it; closes them when destroyed (the kernel drops the locks).
// REQUIRES: the process opens no other descriptor of these files (closing
// one would drop its lock: fcntl locks are per process, which also means
// they do not exclude a second Acquire in the same process).
#ifndef PHYSPOOL_SERVER_INSTANCE_LOCK_H_
#define PHYSPOOL_SERVER_INSTANCE_LOCK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace physpool::server {

class InstanceLock {
 public:
  // Locks each of `paths` (created 0600 if missing; the directories must
  // exist), without waiting, and writes this process's pid into each.
  // FAILED_PRECONDITION "<path> is locked by pid N: another physpoold owns
  // ..." if any is held (then none is kept); the errno's code if a file
  // cannot be opened or locked.
  static absl::StatusOr<InstanceLock> Acquire(
      const std::vector<std::string>& paths);

  InstanceLock(InstanceLock&& o) noexcept : fds_(std::move(o.fds_)) {
    o.fds_.clear();
  }
  InstanceLock& operator=(InstanceLock&&) = delete;
  InstanceLock(const InstanceLock&) = delete;
  ~InstanceLock();

 private:
  InstanceLock() = default;
  std::vector<int> fds_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_INSTANCE_LOCK_H_
