// SPDX-License-Identifier: Apache-2.0
// SHA-256 as lowercase hex, the form the config, the store and the API keep
// token hashes in.
#ifndef PHYSPOOL_UTIL_SHA256_H_
#define PHYSPOOL_UTIL_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace physpool {

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

// Whether `s` is such a hash: 64 lowercase hex digits.
bool IsSha256Hex(absl::string_view s);

}  // namespace physpool

#endif  // PHYSPOOL_UTIL_SHA256_H_
