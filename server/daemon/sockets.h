// SPDX-License-Identifier: Apache-2.0
// physpoold's listening sockets and endpoints: a stale unix socket
// replaced (a live daemon refused), sockets made owner-only and then opened
// to the configured mode and group, and the metrics endpoint stopped
// promptly. Each names the path and the step in its error.
//
// State: none (ScopedUmask keeps the mask it replaced).
// Thread safety: any thread; ScopedUmask changes the process-wide umask.
// I/O: the filesystem (the runtime directory, stat, unlink, chown, chmod),
// a connect to an old unix socket, the group database (getgrnam_r), TCP
// connects to the metrics port (StopExposer).
// REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_DAEMON_SOCKETS_H_
#define PHYSPOOL_SERVER_DAEMON_SOCKETS_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"
#include "server/daemon/config.h"

namespace physpool::server {

// Removes a stale socket; refuses (ALREADY_EXISTS) if a daemon answers on
// it. The runtime directory is made ours (MakePrivateParentDir).
absl::Status PrepareSocket(const std::string& path);

// The process umask for a scope (process-wide: only ever made stricter
// here, so a file another thread creates meanwhile is at most more
// private).
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(umask(mask)) {}
  ~ScopedUmask() { umask(old_); }

 private:
  mode_t old_;
};

// listen.unix_group as a gid: a group name or number; "" = this process's.
absl::StatusOr<gid_t> SocketGroup(const ServerConfig& cfg);
// Gives a socket made owner-only its configured group and mode.
absl::Status OpenSocket(const std::string& path, uint32_t mode, gid_t gid);

// Stops the metrics endpoint at once: civetweb's listener notices its stop
// flag only when its poll (2 s timeout) returns, so it is woken by
// connections until it has stopped. Only where `listen`'s host is an IPv4
// address (or empty, 0.0.0.0, *): for another (a name, IPv6) nothing wakes
// it, and the stop takes up to those 2 s.
void StopExposer(std::unique_ptr<prometheus::Exposer> exposer,
                 const std::string& listen, int port);

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_DAEMON_SOCKETS_H_
