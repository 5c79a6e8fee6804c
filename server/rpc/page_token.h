// SPDX-License-Identifier: Apache-2.0
// Page tokens of the list RPCs (AIP-158): opaque to clients, they carry the
// list they belong to (and its filter) and where the next page starts. A
// token for another list, another filter, or that was altered is
// INVALID_ARGUMENT. The check is an unkeyed hash: it catches mistakes, not
// forgeries (a token only says where a page starts; who may list what is
// the caller's, not the token's).
//
// State: none. Thread safety: pure functions, any thread. I/O: none.
// REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_PAGE_TOKEN_H_
#define PHYSPOOL_SERVER_PAGE_TOKEN_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace physpool::server {

// The page size to use for a request's `page_size`: `def` for 0, at most
// `max`; INVALID_ARGUMENT if negative.
absl::StatusOr<size_t> PageSize(int32_t requested, size_t def, size_t max);

std::string EncodePageToken(absl::string_view list, absl::string_view filter,
                            absl::string_view position);
// The position of a token made by EncodePageToken(list, filter, ...).
absl::StatusOr<std::string> DecodePageToken(absl::string_view token,
                                            absl::string_view list,
                                            absl::string_view filter);

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_PAGE_TOKEN_H_
