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

// mkdir -p with `mode` for the directories it creates.
absl::Status MakeDirs(const std::string& dir, mode_t mode);

// MakeDirs of the directory part of `path` (nothing if it has none).
absl::Status MakeParentDirs(const std::string& path, mode_t mode);

}  // namespace physpool

#endif  // PHYSPOOL_UTIL_FILE_H_
