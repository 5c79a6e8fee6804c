// SPDX-License-Identifier: Apache-2.0
// physpool-keeper's side of sd_notify(3) for the physpoold it runs: the
// daemon already tells a service manager READY=1, STOPPING=1 and, every
// half interval while its pool lock answers, WATCHDOG=1 (notify.h). The
// keeper plays that manager, so that a daemon that hangs (a deadlock, a
// stuck thread) is killed and started again by the keeper alone: the
// keeper keeps the memory, the IOMMU container and the lease views, and no
// lease is voided (docs/operations.md, "A daemon that hangs").
//
// State: the notify socket (bound at `path`, removed with it), the child's
// pid, whether it is READY or STOPPING, and its start or last ping.
// Thread safety: not thread-safe: the keeper's single loop owns it.
// I/O: a datagram socket read without blocking (SO_PASSCRED: only the
// child's messages count); Listen sets the process umask for a moment;
// Export sets environment variables.
// REQUIRES: a single-threaded process (the umask; setenv after fork);
// Export only in the child, between fork and exec.
#ifndef PHYSPOOL_SERVER_CHILD_WATCHDOG_H_
#define PHYSPOOL_SERVER_CHILD_WATCHDOG_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace physpool::server {

class ChildWatchdog {
 public:
  // A datagram socket at `path` (owner only; a stale one is replaced).
  // The child must ping every `interval_ms` once READY, and be READY
  // within `start_timeout_ms` of its start.
  static absl::StatusOr<ChildWatchdog> Listen(const std::string& path,
                                              int64_t interval_ms,
                                              int64_t start_timeout_ms);
  ChildWatchdog(ChildWatchdog&& o) noexcept
      : path_(std::move(o.path_)),
        fd_(std::exchange(o.fd_, -1)),
        interval_ms_(o.interval_ms_),
        start_timeout_ms_(o.start_timeout_ms_) {}
  ChildWatchdog& operator=(ChildWatchdog&&) = delete;
  ~ChildWatchdog();

  int fd() const { return fd_; }
  // Sets NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (this process's
  // pid) in the environment. Call in the child, between fork and exec.
  void Export() const;
  // A new child, `pid`, started now (`now_ms`, a monotonic clock).
  void Started(pid_t pid, int64_t now_ms);
  // Reads what waits on fd(); messages of other processes are ignored.
  void Read(int64_t now_ms);
  // Why the child counts as hung at `now_ms`, or "" if it does not.
  std::string Overdue(int64_t now_ms) const;

 private:
  ChildWatchdog() = default;

  std::string path_;
  int fd_ = -1;
  int64_t interval_ms_ = 0;
  int64_t start_timeout_ms_ = 0;
  pid_t child_ = -1;
  bool ready_ = false;
  bool stopping_ = false;
  int64_t since_ms_ = 0;  // its start, or its last ping once ready
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_CHILD_WATCHDOG_H_
