// SPDX-License-Identifier: Apache-2.0
#include "server/daemon/child_watchdog.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "util/errno_status.h"

namespace physpool::server {

absl::StatusOr<ChildWatchdog> ChildWatchdog::Listen(const std::string& path,
                                                    int64_t interval_ms,
                                                    int64_t start_timeout_ms) {
  ChildWatchdog w;
  w.path_ = path;
  w.interval_ms_ = interval_ms;
  w.start_timeout_ms_ = start_timeout_ms;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("notify socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
    unlink(path.c_str());
  w.fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  const int on = 1;
  const mode_t old = umask(077);
  const int rc =
      w.fd_ < 0 ? -1
                : bind(w.fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (rc != 0) {
    // Not bound: whatever is at `path` is not ours to remove.
    const int err = errno;
    if (w.fd_ >= 0) close(w.fd_);
    w.fd_ = -1;
    return ErrnoStatus(absl::StrCat("notify socket ", path), err);
  }
  // The sender's credentials come with each message.
  if (setsockopt(w.fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0) {
    return ErrnoStatus(absl::StrCat("notify socket ", path), errno);
  }
  return w;
}

ChildWatchdog::~ChildWatchdog() {
  if (fd_ < 0) return;
  close(fd_);
  unlink(path_.c_str());
}

void ChildWatchdog::Export() const {
  setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  setenv("WATCHDOG_USEC", absl::StrCat(interval_ms_ * 1000).c_str(), 1);
  setenv("WATCHDOG_PID", absl::StrCat(getpid()).c_str(), 1);
}

void ChildWatchdog::Started(pid_t pid, int64_t now_ms) {
  child_ = pid;
  ready_ = stopping_ = false;
  since_ms_ = now_ms;
}

void ChildWatchdog::Read(int64_t now_ms) {
  for (;;) {
    char buf[4096];
    iovec iov{buf, sizeof(buf) - 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))] = {};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    const ssize_t n = recvmsg(fd_, &m, MSG_DONTWAIT);
    if (n < 0) return;
    pid_t sender = -1;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        ucred cred;
        std::memcpy(&cred, CMSG_DATA(c), sizeof(cred));
        sender = cred.pid;
      }
    }
    if (sender != child_) continue;  // only the daemon it runs
    buf[n] = '\0';
    for (absl::string_view line : absl::StrSplit(buf, '\n')) {
      if (line == "READY=1") ready_ = true;
      if (line == "STOPPING=1") stopping_ = true;
      if (line == "READY=1" || line == "WATCHDOG=1") since_ms_ = now_ms;
    }
  }
}

std::string ChildWatchdog::Overdue(int64_t now_ms) const {
  if (child_ <= 0 || stopping_) return "";
  if (!ready_ && now_ms - since_ms_ > start_timeout_ms_) {
    return absl::StrCat("not ready ", (now_ms - since_ms_) / 1000,
                        " s after its start (--start-timeout-sec)");
  }
  if (ready_ && now_ms - since_ms_ > interval_ms_) {
    return absl::StrCat("no watchdog ping for ", (now_ms - since_ms_) / 1000,
                        " s (--watchdog-sec)");
  }
  return "";
}

}  // namespace physpool::server
