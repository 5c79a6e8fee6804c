// SPDX-License-Identifier: Apache-2.0
// Structured, leveled logs: one line per event on stderr, in one of two
// formats (process-wide, like the level):
//   logfmt (the default):
//     ts=2026-11-26T07:00:00.123Z level=info msg=listening unix=/run/x.sock
//   json, one object a line, the same keys in the same order:
//     {"ts":"2026-11-26T07:00:00.123Z","level":"info","msg":"listening",
//      "unix":"/run/x.sock"}
// Every value is a string in both formats (F() builds it with StrCat):
// JSON numbers are not inferred. A key given twice keeps its first
// occurrence's name; the later ones become key_2, key_3, ... (a field
// named ts, level or msg too), so a JSON line never holds a key twice.
// JSON strings are escaped (quotes, backslashes, control characters) and
// bytes that are not UTF-8 become U+FFFD: a line is always valid JSON.
//
// State: the level and the format (process-wide, atomic). Thread safety:
// thread-safe; a line is written whole (one fwrite). I/O: each enabled line
// is written and flushed to stderr on the calling thread, at once —
// components log in turns too, under the pool's lock. REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_LOG_H_
#define PHYSPOOL_SERVER_LOG_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace physpool::server {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
enum class LogFormat { kLogfmt, kJson };

// "debug", "info", "warn", "error"; false for anything else.
bool ParseLogLevel(absl::string_view s, LogLevel* out);
void SetLogLevel(LogLevel level);

// "logfmt", "json"; false for anything else.
bool ParseLogFormat(absl::string_view s, LogFormat* out);
const char* LogFormatName(LogFormat format);
void SetLogFormat(LogFormat format);

// Whether a line of `level` would be written: hot paths test it before
// building their fields.
bool LogEnabled(LogLevel level);

using LogField = std::pair<std::string, std::string>;
void Log(LogLevel level, absl::string_view msg,
         std::vector<LogField> fields = {});

template <typename T>
LogField F(absl::string_view key, const T& value) {
  return {std::string(key), absl::StrCat(value)};
}

// The line Log writes (ending in '\n'), `ts` as given: for tests.
std::string FormatLogLine(LogFormat format, absl::string_view ts,
                          LogLevel level, absl::string_view msg,
                          const std::vector<LogField>& fields);

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LOG_H_
