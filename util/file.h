// SPDX-License-Identifier: Apache-2.0
// Small file helpers shared by the daemon, the memory sources and the
// client library.
#ifndef PHYSPOOL_UTIL_FILE_H_
#define PHYSPOOL_UTIL_FILE_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace physpool {

// The whole file. NOT_FOUND / PERMISSION_DENIED "cannot read <what> <path>:
// <reason>".
absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             absl::string_view what);

// Replaces `path` with `data` so that a crash leaves the old content or the
// new, never a mix: written to `path`.tmp with `mode`, fsynced, renamed over
// `path`, and the directory fsynced. The temporary is removed on an error.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view data, mode_t mode);

// mkdir -p with `mode` for the directories it creates.
absl::Status MakeDirs(const std::string& dir, mode_t mode);

// MakeDirs of the directory part of `path` (nothing if it has none).
absl::Status MakeParentDirs(const std::string& path, mode_t mode);

// A directory the daemon keeps its files in (runtime, sim, store, backing):
// creates it (missing parents too, all with `mode`), or accepts the one that
// is there only if it is a real directory (lstat: not a symlink), owned by
// the effective uid and not writable by group or others. Parents are not
// checked: system directories such as /tmp or /dev/shm are world-writable
// but sticky. FAILED_PRECONDITION naming the path, its owner uid and its
// mode, e.g. "/tmp/physpool-1000 is owned by uid 65534, not 1000 (mode
// 0755): refusing to use it ...".
absl::Status MakePrivateDir(const std::string& dir, mode_t mode);

// MakePrivateDir of the directory part of `path` (nothing if it has none:
// a path relative to the working directory).
absl::Status MakePrivateParentDir(const std::string& path, mode_t mode);

}  // namespace physpool

#endif  // PHYSPOOL_UTIL_FILE_H_
