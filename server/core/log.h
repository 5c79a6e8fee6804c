// SPDX-License-Identifier: Apache-2.0
// Structured, leveled logs: one line per event on stderr,
//   ts=2026-11-26T07:00:00.123Z level=info msg="listening" unix=/run/x.sock
//
// State: the level (process-wide, atomic). Thread safety: thread-safe; a
// line is written whole (one fwrite). I/O: each enabled line is written
// and flushed to stderr on the calling thread, at once — components log
// in turns too, under the pool's lock. REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_LOG_H_
#define PHYSPOOL_SERVER_LOG_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace physpool::server {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// "debug", "info", "warn", "error"; false for anything else.
bool ParseLogLevel(absl::string_view s, LogLevel* out);
void SetLogLevel(LogLevel level);

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

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LOG_H_
