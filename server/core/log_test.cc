// SPDX-License-Identifier: Apache-2.0
// The log line's two formats (core/log.h): logfmt as before; JSON with the
// same keys in the same order, every value a string, escaped, not-UTF-8
// bytes replaced, a duplicate key renamed. nlohmann::json (strict: it
// refuses invalid UTF-8 and control characters) is the validity oracle.
#include "server/core/log.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace physpool::server {
namespace {

constexpr char kTs[] = "2026-11-26T07:00:00.123Z";

std::string Json(absl::string_view msg, const std::vector<LogField>& fields,
                 LogLevel level = LogLevel::kInfo) {
  return FormatLogLine(LogFormat::kJson, kTs, level, msg, fields);
}

// The line parsed; fails the test if it is not one JSON object ending in
// exactly one '\n'.
nlohmann::ordered_json Parse(const std::string& line) {
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(line.substr(0, line.size() - 1));
  } catch (const nlohmann::json::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << ": " << line;
  }
  EXPECT_TRUE(j.is_object()) << line;
  return j;
}

std::vector<std::string> Keys(const nlohmann::ordered_json& j) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  return keys;
}

TEST(LogTest, FormatNames) {
  LogFormat f = LogFormat::kJson;
  ASSERT_TRUE(ParseLogFormat("logfmt", &f));
  EXPECT_EQ(f, LogFormat::kLogfmt);
  ASSERT_TRUE(ParseLogFormat("json", &f));
  EXPECT_EQ(f, LogFormat::kJson);
  EXPECT_FALSE(ParseLogFormat("JSON", &f));
  EXPECT_FALSE(ParseLogFormat("", &f));
  EXPECT_EQ(f, LogFormat::kJson);  // unchanged on failure
  EXPECT_STREQ(LogFormatName(LogFormat::kJson), "json");
  EXPECT_STREQ(LogFormatName(LogFormat::kLogfmt), "logfmt");
}

TEST(LogTest, LogfmtIsUnchanged) {
  EXPECT_EQ(FormatLogLine(LogFormat::kLogfmt, kTs, LogLevel::kInfo, "listening",
                          {F("unix", "/run/x.sock")}),
            "ts=2026-11-26T07:00:00.123Z level=info msg=listening "
            "unix=/run/x.sock\n");
  EXPECT_EQ(FormatLogLine(LogFormat::kLogfmt, kTs, LogLevel::kWarn,
                          "lease ended", {F("how", "a \"b\""), F("n", 3)}),
            "ts=2026-11-26T07:00:00.123Z level=warn msg=\"lease ended\" "
            "how=\"a \\\"b\\\"\" n=3\n");
}

TEST(LogTest, LogfmtNewlineStaysOnTheLine) {
  EXPECT_EQ(FormatLogLine(LogFormat::kLogfmt, kTs, LogLevel::kInfo, "m",
                          {F("e", "a\nb")}),
            "ts=2026-11-26T07:00:00.123Z level=info msg=m e=\"a\\nb\"\n");
}

TEST(LogTest, JsonHasTheLogfmtKeysInOrderAndStringValues) {
  const std::string line =
      Json("listening", {F("unix", "/run/x.sock"), F("port", 7600)});
  EXPECT_EQ(line,
            "{\"ts\":\"2026-11-26T07:00:00.123Z\",\"level\":\"info\","
            "\"msg\":\"listening\",\"unix\":\"/run/x.sock\","
            "\"port\":\"7600\"}\n");
  const auto j = Parse(line);
  EXPECT_THAT(Keys(j),
              ::testing::ElementsAre("ts", "level", "msg", "unix", "port"));
  EXPECT_EQ(j["port"], "7600");
}

TEST(LogTest, JsonLevels) {
  for (auto [level, name] : {std::pair{LogLevel::kDebug, "debug"},
                             {LogLevel::kInfo, "info"},
                             {LogLevel::kWarn, "warn"},
                             {LogLevel::kError, "error"}}) {
    EXPECT_EQ(Parse(Json("m", {}, level))["level"], name);
  }
}

TEST(LogTest, JsonEmptyMessageAndValue) {
  const auto j = Parse(Json("", {F("empty", "")}));
  EXPECT_EQ(j["msg"], "");
  EXPECT_EQ(j["empty"], "");
}

TEST(LogTest, JsonEscapesQuotesBackslashesAndControls) {
  const std::string v = std::string("q\"b\\n\nt\tr\rbs\bff\fnul") +
                        std::string(1, '\0') + "\x01\x1f\x7f/end";
  const std::string line = Json("m", {F("v", v)});
  EXPECT_THAT(line,
              ::testing::HasSubstr("\"v\":\"q\\\"b\\\\n\\nt\\tr\\rbs\\bff\\fnul"
                                   "\\u0000\\u0001\\u001f\x7f/end\""));
  EXPECT_EQ(Parse(line)["v"], v);  // round-trips
}

TEST(LogTest, JsonKeepsValidUtf8) {
  const std::string v = "\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xEF\xBF\xBD";
  const std::string line = Json("m", {F("v", v)});
  EXPECT_THAT(line, ::testing::HasSubstr(v));
  EXPECT_EQ(Parse(line)["v"], v);
}

TEST(LogTest, JsonReplacesInvalidUtf8) {
  const std::string fffd = "\xEF\xBF\xBD";
  struct Case {
    std::string in, out;
  } cases[] = {
      {"a\xFF"
       "b",
       "a" + fffd + "b"},                               // never a lead byte
      {"\x80", fffd},                                   // lone continuation
      {"\xC0\xAF", fffd + fffd},                        // overlong '/'
      {"\xE0\x80\xAF", fffd + fffd + fffd},             // overlong, 3 bytes
      {"\xED\xA0\x80", fffd + fffd + fffd},             // a surrogate
      {"\xF4\x90\x80\x80", fffd + fffd + fffd + fffd},  // above U+10FFFF
      {"\xE2\x82", fffd},         // truncated: one maximal subpart
      {"\xE2\x82x", fffd + "x"},  // ... followed by ASCII
      {"\xF0\x9F\x98", fffd},     // truncated 4-byte sequence
      {"x\xC3", "x" + fffd},      // at the very end
  };
  for (const Case& c : cases) {
    const std::string line = Json(c.in, {F(c.in, c.in)});
    const auto j = Parse(line);
    EXPECT_EQ(j["msg"], c.out) << line;
    EXPECT_EQ(j[c.out], c.out) << line;  // keys are escaped too
  }
}

TEST(LogTest, JsonDuplicateKeysAreRenamedNeverRepeated) {
  const std::string line = Json("m", {F("a", 1), F("a", 2), F("a_2", 3),
                                      F("msg", "x"), F("ts", "y"), F("a", 4)});
  const auto j = Parse(line);
  EXPECT_THAT(Keys(j), ::testing::ElementsAre("ts", "level", "msg", "a", "a_2",
                                              "a_2_2", "msg_2", "ts_2", "a_3"));
  EXPECT_EQ(j["a"], "1");
  EXPECT_EQ(j["a_2"], "2");
  EXPECT_EQ(j["a_2_2"], "3");
  EXPECT_EQ(j["msg"], "m");
  EXPECT_EQ(j["msg_2"], "x");
  EXPECT_EQ(j["a_3"], "4");
  // logfmt names them the same way.
  EXPECT_EQ(FormatLogLine(LogFormat::kLogfmt, kTs, LogLevel::kInfo, "m",
                          {F("a", 1), F("a", 2)}),
            "ts=2026-11-26T07:00:00.123Z level=info msg=m a=1 a_2=2\n");
}

}  // namespace
}  // namespace physpool::server
