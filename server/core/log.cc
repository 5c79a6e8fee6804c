// SPDX-License-Identifier: Apache-2.0
#include "server/core/log.h"

#include <atomic>
#include <cstdio>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "util/json_string.h"

namespace physpool::server {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kLogfmt)};

constexpr const char* kLevelNames[] = {"debug", "info", "warn", "error"};

void AppendLogfmtValue(absl::string_view v, std::string* out) {
  const bool quote =
      v.empty() || v.find_first_of(" \"=\t\n") != absl::string_view::npos;
  if (!quote) {
    out->append(v.data(), v.size());
    return;
  }
  out->push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') out->push_back('\\');
    if (c == '\n') {
      out->append("\\n");
      continue;
    }
    out->push_back(c);
  }
  out->push_back('"');
}

// The caller's key, or key_2, key_3, ... if an earlier field (or ts,
// level, msg) has it. `used` holds the keys so far.
absl::string_view UniqueKey(const std::string& key,
                            std::vector<std::string>* used,
                            std::string* scratch) {
  auto taken = [&](absl::string_view k) {
    for (const std::string& u : *used)
      if (u == k) return true;
    return false;
  };
  absl::string_view name = key;
  for (int n = 2; taken(name); ++n) {
    *scratch = absl::StrCat(key, "_", n);
    name = *scratch;
  }
  used->emplace_back(name);
  return name;
}

}  // namespace

bool ParseLogLevel(absl::string_view s, LogLevel* out) {
  if (s == "debug")
    *out = LogLevel::kDebug;
  else if (s == "info")
    *out = LogLevel::kInfo;
  else if (s == "warn")
    *out = LogLevel::kWarn;
  else if (s == "error")
    *out = LogLevel::kError;
  else
    return false;
  return true;
}

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }

bool ParseLogFormat(absl::string_view s, LogFormat* out) {
  if (s == "logfmt")
    *out = LogFormat::kLogfmt;
  else if (s == "json")
    *out = LogFormat::kJson;
  else
    return false;
  return true;
}

const char* LogFormatName(LogFormat format) {
  return format == LogFormat::kJson ? "json" : "logfmt";
}

void SetLogFormat(LogFormat format) { g_format = static_cast<int>(format); }

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

std::string FormatLogLine(LogFormat format, absl::string_view ts,
                          LogLevel level, absl::string_view msg,
                          const std::vector<LogField>& fields) {
  const char* level_name = kLevelNames[static_cast<int>(level)];
  std::vector<std::string> used = {"ts", "level", "msg"};
  std::string scratch;
  std::string line;
  if (format == LogFormat::kJson) {
    absl::StrAppend(&line, "{\"ts\":");
    AppendJsonString(ts, &line);
    absl::StrAppend(&line, ",\"level\":\"", level_name, "\",\"msg\":");
    AppendJsonString(msg, &line);
    for (const auto& [k, v] : fields) {
      line.push_back(',');
      AppendJsonString(UniqueKey(k, &used, &scratch), &line);
      line.push_back(':');
      AppendJsonString(v, &line);
    }
    line.append("}\n");
    return line;
  }
  absl::StrAppend(&line, "ts=", ts, " level=", level_name, " msg=");
  AppendLogfmtValue(msg, &line);
  for (const auto& [k, v] : fields) {
    absl::StrAppend(&line, " ", UniqueKey(k, &used, &scratch), "=");
    AppendLogfmtValue(v, &line);
  }
  line.push_back('\n');
  return line;
}

void Log(LogLevel level, absl::string_view msg, std::vector<LogField> fields) {
  if (!LogEnabled(level)) return;
  const std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                          absl::UTCTimeZone());
  const std::string line = FormatLogLine(
      static_cast<LogFormat>(g_format.load(std::memory_order_relaxed)), ts,
      level, msg, fields);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace physpool::server
