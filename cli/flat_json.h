// SPDX-License-Identifier: Apache-2.0
// A strict reader and writer for flat JSON objects: one object whose values
// are strings, unsigned 64-bit integers or booleans — the shape of every line
// of a `physpoolctl simulate` trace. Errors name the column.
#ifndef PHYSPOOL_CLI_FLAT_JSON_H_
#define PHYSPOOL_CLI_FLAT_JSON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace physpool::cli {

struct JsonField {
  enum class Type { kString, kUint, kBool };
  std::string key;
  Type type = Type::kString;
  std::string str;
  uint64_t uint = 0;
  bool boolean = false;
};

// Parses `text` as one flat object. INVALID_ARGUMENT ("column N: ...") for
// anything else: nested values, null, negative or fractional numbers,
// numbers above 2^64 - 1, duplicate keys, trailing characters.
absl::StatusOr<std::vector<JsonField>> ParseFlatObject(absl::string_view text);

// Appends `s` as a JSON string literal (quoted, escaped) to *out.
void AppendJsonString(absl::string_view s, std::string* out);

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_FLAT_JSON_H_
