// SPDX-License-Identifier: Apache-2.0
#include "util/errno_status.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace physpool {

namespace {
constexpr char kErrnoPayload[] = "physpool.dev/errno";
}  // namespace

absl::Status ErrnoStatus(absl::string_view step, int err) {
  absl::StatusCode code;
  switch (err) {
    case EBUSY:
      code = absl::StatusCode::kUnavailable;
      break;
    case ENOMEM:
    case ENOSPC:
      code = absl::StatusCode::kResourceExhausted;
      break;
    case EPERM:
    case EACCES:
      code = absl::StatusCode::kPermissionDenied;
      break;
    case ENOENT:
    case ENOTDIR:
    case ENODEV:
      code = absl::StatusCode::kNotFound;
      break;
    case EEXIST:
      code = absl::StatusCode::kAlreadyExists;
      break;
    case EINVAL:
    case EFAULT:
      code = absl::StatusCode::kInvalidArgument;
      break;
    default:
      code = absl::StatusCode::kInternal;
  }
  absl::Status s(
      code, absl::StrCat(step, ": ", std::strerror(err), " (errno ", err, ")"));
  s.SetPayload(kErrnoPayload, absl::Cord(absl::StrCat(err)));
  return s;
}

int ErrnoOf(const absl::Status& s) {
  auto p = s.GetPayload(kErrnoPayload);
  int err = 0;
  if (!p || !absl::SimpleAtoi(std::string(*p), &err)) return 0;
  return err;
}

}  // namespace physpool
