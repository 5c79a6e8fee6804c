// SPDX-License-Identifier: Apache-2.0
// Who may use the fd socket (fd_server.h): the peer's credentials against
// listen.fd_socket_access (the allow lists, connections per uid); a
// refusal is answered on the socket and logged at most once a second.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/core/log.h"
#include "server/rpc/fd_server.h"

namespace physpool::server {

bool FdServer::Allowed(const ucred& peer) const {
  const FdSocketOptions& o = options_;
  if (o.allowed_uids.empty() && o.allowed_gids.empty()) return true;
  if (peer.uid == 0 || peer.uid == geteuid()) return true;
  return std::count(o.allowed_uids.begin(), o.allowed_uids.end(), peer.uid) ||
         std::count(o.allowed_gids.begin(), o.allowed_gids.end(), peer.gid);
}

void FdServer::Admit(int fd, std::vector<Conn>* conns) {
  Conn c;
  c.fd = fd;
  socklen_t len = sizeof(c.peer);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c.peer, &len) != 0) {
    close(fd);
    return;
  }
  absl::Status refused;
  if (!Allowed(c.peer)) {
    refused = absl::PermissionDeniedError(
        absl::StrCat("uid ", c.peer.uid, " gid ", c.peer.gid,
                     " may not use the fd socket (listen.fd_socket_access)"));
  } else {
    absl::MutexLock l(&mu_);
    uint32_t& open = open_per_uid_[c.peer.uid];
    if (open >= options_.max_connections_per_uid) {
      refused = absl::ResourceExhaustedError(absl::StrCat(
          "uid ", c.peer.uid, " has ", options_.max_connections_per_uid,
          " connections open to the fd socket (listen.fd_socket_access."
          "max_connections_per_uid)"));
    } else {
      ++open;
    }
  }
  if (!refused.ok()) {
    LogRefused(c.peer, refused);
    const std::string line = ErrorLine(refused);
    (void)!send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
    return;
  }
  Log(LogLevel::kDebug, "fd socket connection",
      {F("pid", c.peer.pid), F("uid", c.peer.uid), F("gid", c.peer.gid)});
  c.deadline = absl::Now() + options_.request_deadline;
  conns->push_back(std::move(c));
}

void FdServer::LogRefused(const ucred& peer, const absl::Status& why) {
  uint64_t suppressed;
  {
    absl::MutexLock l(&mu_);
    const absl::Time now = absl::Now();
    if (now - last_refusal_log_ < absl::Seconds(1)) {
      ++refusals_unlogged_;
      return;
    }
    last_refusal_log_ = now;
    suppressed = refusals_unlogged_;
    refusals_unlogged_ = 0;
  }
  Log(LogLevel::kWarn, "fd socket connection refused",
      {F("pid", peer.pid), F("uid", peer.uid), F("gid", peer.gid),
       F("error", why.ToString()), F("refusals_not_logged", suppressed)});
}

}  // namespace physpool::server
