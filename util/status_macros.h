// SPDX-License-Identifier: Apache-2.0
// RETURN_IF_ERROR / ASSIGN_OR_RETURN, named as in Abseil's internal macros
// (Debian's Abseil 20220623 ships none).
#ifndef PHYSPOOL_UTIL_STATUS_MACROS_H_
#define PHYSPOOL_UTIL_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns the status of `expr` from the enclosing function unless it is OK.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status physpool_status_ = (expr);            \
    if (!physpool_status_.ok()) return physpool_status_; \
  } while (0)

#define PHYSPOOL_STATUS_CONCAT_INNER(a, b) a##b
#define PHYSPOOL_STATUS_CONCAT(a, b) PHYSPOOL_STATUS_CONCAT_INNER(a, b)

// Evaluates `rexpr` (a StatusOr); returns its status on error, else moves
// its value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, rexpr)                                      \
  auto PHYSPOOL_STATUS_CONCAT(physpool_statusor_, __LINE__) = (rexpr);    \
  if (!PHYSPOOL_STATUS_CONCAT(physpool_statusor_, __LINE__).ok())         \
    return PHYSPOOL_STATUS_CONCAT(physpool_statusor_, __LINE__).status(); \
  lhs = std::move(*PHYSPOOL_STATUS_CONCAT(physpool_statusor_, __LINE__))

#endif  // PHYSPOOL_UTIL_STATUS_MACROS_H_
