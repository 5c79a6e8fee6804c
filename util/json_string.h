// SPDX-License-Identifier: Apache-2.0
// JSON string literals for the lines physpool writes by hand (the daemon's
// JSON log lines, simulate's results): one escaper for every writer.
//
// State: none. Thread safety: any thread. I/O: none. REQUIRES: nothing.
#ifndef PHYSPOOL_UTIL_JSON_STRING_H_
#define PHYSPOOL_UTIL_JSON_STRING_H_

#include <string>

#include "absl/strings/string_view.h"

namespace physpool {

// Appends `s` as a JSON string literal to *out: quoted; '"', '\\' and the
// control characters escaped (\n, \r, \t, \b, \f, else \u00XX); valid
// UTF-8 kept as it is; each maximal invalid subpart of a UTF-8 sequence
// replaced by U+FFFD (the Unicode-recommended practice, as Python's
// decode(errors="replace")), so that the output is always valid JSON in
// UTF-8 whatever bytes `s` holds.
void AppendJsonString(absl::string_view s, std::string* out);

}  // namespace physpool

#endif  // PHYSPOOL_UTIL_JSON_STRING_H_
