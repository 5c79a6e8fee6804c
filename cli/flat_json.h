// SPDX-License-Identifier: Apache-2.0
// Flat JSON objects, the shape of every line of a `physpoolctl simulate`
// trace: one object whose values are strings, unsigned 64-bit integers or
// booleans. Reading is simdjson's On-Demand API (this file adds the checks
// JSON itself does not make and names the column); writing is the escaping
// of one string.
//
// What a line must be (INVALID_ARGUMENT otherwise):
//   - valid UTF-8, one object, nothing but JSON whitespace around it;
//   - no nested object or array, no null, no duplicate key (after
//     unescaping: "a" and "\u0061" are the same key);
//   - numbers are plain integers in [0, 2^64 - 1]: no sign, no fraction, no
//     exponent (1.0 and 1e3 are refused), no leading zero.
// Errors read "column N: reason", N counting bytes from 1, wherever simdjson
// gives a position; errors it finds while indexing the whole line (invalid
// UTF-8, a control character in a string, an unterminated string) have no
// column.
#ifndef PHYSPOOL_CLI_FLAT_JSON_H_
#define PHYSPOOL_CLI_FLAT_JSON_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace physpool::cli {

struct JsonField {
  enum class Type { kString, kUint, kBool };
  absl::string_view key;  // unescaped
  Type type = Type::kString;
  absl::string_view str;  // kString: unescaped, valid UTF-8
  uint64_t uint = 0;      // kUint
  bool boolean = false;   // kBool
};

// Keeps simdjson's parser (its buffers grow to the longest line seen) from
// line to line. Not thread-safe; one per reading thread.
class FlatJsonReader {
 public:
  // Bytes that must be readable after a line for it to be parsed in place
  // (simdjson's SIMDJSON_PADDING).
  static constexpr size_t kPadding = 64;

  FlatJsonReader();
  ~FlatJsonReader();
  FlatJsonReader(const FlatJsonReader&) = delete;
  FlatJsonReader& operator=(const FlatJsonReader&) = delete;

  // Parses `text` as one flat object. `readable` (>= text.size()) is how
  // many bytes from text.data() may be read: with kPadding more than the
  // text, the line is parsed where it lies, otherwise it is first copied
  // into a padded buffer of the reader's. The fields (and the views in them)
  // stay valid until the next Parse or the reader's destruction.
  absl::StatusOr<absl::Span<const JsonField>> Parse(absl::string_view text,
                                                    size_t readable);
  absl::StatusOr<absl::Span<const JsonField>> Parse(absl::string_view text) {
    return Parse(text, text.size());
  }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_FLAT_JSON_H_
