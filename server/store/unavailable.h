// SPDX-License-Identifier: Apache-2.0
// The answer to a change the lease store did not take: UNAVAILABLE, with
// the store's reason and what did (not) happen (docs/operations.md, "The
// store").
//
// State: none (a pure function). Thread safety: no shared state.
// I/O: none. REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_STORE_UNAVAILABLE_H_
#define PHYSPOOL_SERVER_STORE_UNAVAILABLE_H_

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace physpool::server {

inline absl::Status StoreUnavailable(const absl::Status& s,
                                     absl::string_view what) {
  return absl::UnavailableError(
      absl::StrCat("the lease store failed: ", s.message(), "; ", what,
                   " (retry; docs/operations.md, \"The store\")"));
}

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_STORE_UNAVAILABLE_H_
