// SPDX-License-Identifier: Apache-2.0
#include "util/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "util/errno_status.h"

namespace physpool {

absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return ErrnoStatus(absl::StrCat("cannot read ", what, " ", path), errno);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  const int fd =
      open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus(absl::StrCat("creating ", tmp), errno);
  int err = 0;
  for (size_t off = 0; off < data.size() && err == 0;) {
    const ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n >= 0) {
      off += static_cast<size_t>(n);
    } else if (errno != EINTR) {
      err = errno;
    }
  }
  // The mode as asked for, whatever the umask.
  if (err == 0 && (fchmod(fd, mode) != 0 || fsync(fd) != 0)) err = errno;
  close(fd);
  if (err == 0 && rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    unlink(tmp.c_str());
    return ErrnoStatus(absl::StrCat("writing ", path), err);
  }
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : path.substr(0, slash + 1);
  if (const int d = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      d >= 0) {
    fsync(d);
    close(d);
  }
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& dir, mode_t mode) {
  for (size_t pos = 0; pos != std::string::npos;) {
    pos = dir.find('/', pos + 1);
    const std::string part = dir.substr(0, pos);
    if (part.empty()) continue;
    if (mkdir(part.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoStatus(absl::StrCat("mkdir ", part), errno);
    }
  }
  return absl::OkStatus();
}

absl::Status MakeParentDirs(const std::string& path, mode_t mode) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return absl::OkStatus();
  return MakeDirs(path.substr(0, slash), mode);
}

absl::Status MakePrivateDir(const std::string& dir, mode_t mode) {
  if (dir.empty()) return absl::InvalidArgumentError("empty directory path");
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  if (absl::Status s = MakeParentDirs(d, mode); !s.ok()) return s;
  if (mkdir(d.c_str(), mode) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", d), errno);
  }
  struct stat st;
  if (lstat(d.c_str(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("lstat ", d), errno);
  }
  char octal[8];
  snprintf(octal, sizeof(octal), "%04o", unsigned(st.st_mode & 07777));
  const std::string what =
      absl::StrCat(" (owner uid ", st.st_uid, ", mode ", octal,
                   "): refusing to use it; remove it or fix it, or configure "
                   "another directory");
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    const ssize_t n = readlink(d.c_str(), target, sizeof(target) - 1);
    return absl::FailedPreconditionError(
        absl::StrCat(d, " is a symlink (to ",
                     n > 0 ? std::string(target, n) : "?", ")", what));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(d, " is not a directory", what));
  }
  if (st.st_uid != geteuid()) {
    return absl::FailedPreconditionError(
        absl::StrCat(d, " is owned by uid ", st.st_uid,
                     ", not by physpoold's uid ", geteuid(), what));
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    return absl::FailedPreconditionError(
        absl::StrCat(d, " is writable by its group or others", what));
  }
  return absl::OkStatus();
}

absl::Status MakePrivateParentDir(const std::string& path, mode_t mode) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return absl::OkStatus();
  return MakePrivateDir(slash == 0 ? "/" : path.substr(0, slash), mode);
}

}  // namespace physpool
