// SPDX-License-Identifier: Apache-2.0
// errno as an absl::Status naming the step that failed: the one place
// physpool turns errno into a status code.
#ifndef PHYSPOOL_UTIL_ERRNO_STATUS_H_
#define PHYSPOOL_UTIL_ERRNO_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace physpool {

// "<step>: <strerror> (errno N)". The code is the most specific one: EBUSY
// -> UNAVAILABLE, ENOMEM/ENOSPC -> RESOURCE_EXHAUSTED, EPERM/EACCES ->
// PERMISSION_DENIED, ENOENT/ENOTDIR/ENODEV -> NOT_FOUND, EEXIST ->
// ALREADY_EXISTS, EINVAL/EFAULT -> INVALID_ARGUMENT, else INTERNAL.
absl::Status ErrnoStatus(absl::string_view step, int err);
// The errno an ErrnoStatus carries; 0 for any other status.
int ErrnoOf(const absl::Status& s);

}  // namespace physpool

#endif  // PHYSPOOL_UTIL_ERRNO_STATUS_H_
