// SPDX-License-Identifier: Apache-2.0
#include "server/core/log.h"

#include <atomic>
#include <cstdio>

#include "absl/time/clock.h"
#include "absl/time/time.h"

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

// The length of the well-formed UTF-8 sequence at the start of `s`, or,
// if there is none, minus the length of its maximal invalid subpart (the
// longest prefix of a well-formed sequence there, at least 1 byte).
int Utf8Sequence(absl::string_view s) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  int len;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return -1;
  }
  for (int i = 1; i < len; ++i) {
    if (static_cast<size_t>(i) >= s.size()) return -i;
    const unsigned char lower = i == 1 ? lo : 0x80;
    const unsigned char upper = i == 1 ? hi : 0xBF;
    if (b(i) < lower || b(i) > upper) return -i;
  }
  return len;
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

void AppendJsonString(absl::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const int n = Utf8Sequence(s.substr(i));
      if (n > 0) {
        out->append(s.data() + i, n);
        i += n;
      } else {
        out->append("\xEF\xBF\xBD");  // U+FFFD
        i += -n;
      }
      continue;
    }
    ++i;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

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
