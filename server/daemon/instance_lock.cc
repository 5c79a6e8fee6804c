// SPDX-License-Identifier: Apache-2.0
#include "server/daemon/instance_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "util/errno_status.h"

namespace physpool::server {

absl::StatusOr<InstanceLock> InstanceLock::Acquire(
    const std::vector<std::string>& paths) {
  InstanceLock lock;
  for (const std::string& path : paths) {
    const int fd =
        open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return ErrnoStatus(absl::StrCat("open lock ", path), errno);
    lock.fds_.push_back(fd);
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) == 0) {
      const std::string pid = absl::StrCat(getpid(), "\n");
      if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) !=
                                       static_cast<ssize_t>(pid.size())) {
        return ErrnoStatus(absl::StrCat("write lock ", path), errno);
      }
      continue;
    }
    if (errno != EACCES && errno != EAGAIN) {
      return ErrnoStatus(absl::StrCat("lock ", path), errno);
    }
    // Who holds it, from the kernel (the file's pid may not be written
    // yet by a daemon that locked it a moment ago).
    struct flock who = {};
    who.l_type = F_WRLCK;
    who.l_whence = SEEK_SET;
    const bool known = fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK;
    return absl::FailedPreconditionError(absl::StrCat(
        path, " is locked by ",
        known && who.l_pid > 0 ? absl::StrCat("pid ", who.l_pid)
                               : std::string("another process"),
        ": another physpoold owns this store or memory, and two daemons on "
        "one pool would hand out the same pages; stop it first, or give "
        "this one its own store.path and memory"));
  }
  return lock;
}

InstanceLock::~InstanceLock() {
  for (int fd : fds_) close(fd);
}

}  // namespace physpool::server
