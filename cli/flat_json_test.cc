// SPDX-License-Identifier: Apache-2.0
#include "cli/flat_json.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "util/json_string.h"

namespace physpool::cli {
namespace {

using Type = JsonField::Type;

TEST(FlatJsonTest, ParsesStringsNumbersBooleans) {
  FlatJsonReader reader;
  ASSERT_OK_AND_ASSIGN(
      auto f,
      reader.Parse(
          R"( {"a":"x\"y\u00e9\ud83d\ude00", "b" : 18446744073709551615, "c":true,"d":false,"e":0} )"));
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f[0].key, "a");
  EXPECT_EQ(f[0].type, Type::kString);
  EXPECT_EQ(f[0].str, "x\"y\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(f[1].key, "b");
  EXPECT_EQ(f[1].type, Type::kUint);
  EXPECT_EQ(f[1].uint, 18446744073709551615u);
  EXPECT_EQ(f[2].type, Type::kBool);
  EXPECT_TRUE(f[2].boolean);
  EXPECT_EQ(f[3].type, Type::kBool);
  EXPECT_FALSE(f[3].boolean);
  EXPECT_EQ(f[4].type, Type::kUint);
  EXPECT_EQ(f[4].uint, 0u);
  ASSERT_OK_AND_ASSIGN(auto empty, reader.Parse("{}"));
  EXPECT_TRUE(empty.empty());
  ASSERT_OK_AND_ASSIGN(auto spaced, reader.Parse("\t{ }\r"));
  EXPECT_TRUE(spaced.empty());
}

// The messages (and columns) are the hand-written parser's where simdjson
// lets us tell the cases apart; the comments say where they differ.
TEST(FlatJsonTest, RejectsWithTheColumn) {
  struct Case {
    std::string text;
    std::string error;
  } cases[] = {
      {"", "column 1: expected '{'"},
      {"[1]", "column 1: expected '{'"},
      {"  x", "column 3: expected '{'"},
      {"\xef\xbb\xbf{\"a\":1}", "column 1: expected '{'"},  // a BOM, as before
      // Was "column 7: expected ',' or '}'": simdjson only tells that the
      // line's last token does not close the object.
      {"{\"a\":1", "column 6: expected '}' to end the line"},
      // Was "unexpected characters after the object", same column.
      {"{\"a\":1} x", "column 9: expected '}' to end the line"},
      {"{\"a\":1}{", "column 8: expected '}' to end the line"},
      {"{\"a\":1}}", "column 8: unexpected characters after the object"},
      {"{\"a\":-1}", "column 6: negative numbers are not allowed"},
      {"{\"a\":-0}", "column 6: negative numbers are not allowed"},
      {"{\"a\":-}", "column 6: negative numbers are not allowed"},
      // Was column 7 (at the '.' or 'e').
      {"{\"a\":1.5}",
       "column 6: expected an integer (no fraction or exponent)"},
      {"{\"a\":1.0}",
       "column 6: expected an integer (no fraction or exponent)"},
      {"{\"a\":1e3}",
       "column 6: expected an integer (no fraction or exponent)"},
      {"{\"a\":1E3}",
       "column 6: expected an integer (no fraction or exponent)"},
      {"{\"a\":18446744073709551616}", "column 6: number above 2^64 - 1"},
      {"{\"a\":99999999999999999999999}", "column 6: number above 2^64 - 1"},
      {"{\"a\":01}", "column 6: numbers may not have leading zeros"},
      {"{\"a\":00}", "column 6: numbers may not have leading zeros"},
      // Was "column 7: expected ',' or '}'".
      {"{\"a\":1x}", "column 6: malformed number"},
      {"{\"a\":null}", "column 6: null is not allowed"},
      {"{\"a\":{}}", "column 6: nested objects and arrays are not allowed"},
      {"{\"a\":[1]}", "column 6: nested objects and arrays are not allowed"},
      // Was column 11, after the second key.
      {"{\"a\":1,\"a\":2}", "column 8: duplicate key \"a\""},
      {"{\"a\":1,\"\\u0061\":2}", "column 8: duplicate key \"a\""},
      {"{\"a\":\"x}", "unterminated string"},
      // Were "bad escape in string" and "unpaired surrogate" at the escape;
      // simdjson does not tell them apart: at the string's quote.
      {"{\"a\":\"\\q\"}",
       "column 6: bad escape or unpaired surrogate in string"},
      {"{\"a\":\"\\ud800\"}",
       "column 6: bad escape or unpaired surrogate in string"},
      {"{\"a\":\"\\udc00\"}",
       "column 6: bad escape or unpaired surrogate in string"},
      {"{\"a\":\"\\ud800\\u0041\"}",
       "column 6: bad escape or unpaired surrogate in string"},
      {"{\"a\":\"\\u00\"}",
       "column 6: bad escape or unpaired surrogate in string"},
      {"{\"a\\q\":1}", "column 2: bad escape or unpaired surrogate in string"},
      {"{a:1}", "column 2: expected a key in double quotes"},
      {"{\"a\":1,}", "column 8: expected a key in double quotes"},
      {"{\"a\" 1}", "column 6: expected ':'"},
      {"{\"a\":1 \"b\":2}", "column 8: expected ',' or '}'"},
      {"{\"a\":\"x\" \"b\":2}", "column 10: expected ',' or '}'"},
      {"{\"a\":true x}", "column 11: expected ',' or '}'"},
      {"{\"a\":tru}",
       "column 6: expected a string, an unsigned integer, true or false"},
      {"{\"a\":truex}",
       "column 6: expected a string, an unsigned integer, true or false"},
      {"{\"a\":}",
       "column 6: expected a string, an unsigned integer, true or false"},
      {"{\"a\":+1}",
       "column 6: expected a string, an unsigned integer, true or false"},
      // Bytes the old parser passed through, or refused with a column;
      // simdjson refuses them while indexing the line, before any position.
      {"{\"a\":\"\xff\"}", "invalid UTF-8"},
      {"{\"a\":\"\xc3\"}", "invalid UTF-8"},
      {"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8"},  // an encoded surrogate
      {"{\"a\":1}\xff", "invalid UTF-8"},
      {std::string("{\"a\":\"x\0y\"}", 11), "control character in string"},
      {"{\"a\":\"x\ty\"}", "control character in string"},
      {std::string("{\"a\":1}\0", 8), "column 8: expected '}' to end the line"},
      {std::string("\0{\"a\":1}", 8), "column 1: expected '{'"},
      {"{\"a\":1}\v", "column 8: expected '}' to end the line"},
  };
  FlatJsonReader reader;
  for (const Case& c : cases) {
    auto r = reader.Parse(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_EQ(std::string(r.status().message()), c.error) << c.text;
  }
}

// \u0000 is a valid escape: the string holds a NUL byte (as before).
TEST(FlatJsonTest, EscapedNulIsKept) {
  FlatJsonReader reader;
  ASSERT_OK_AND_ASSIGN(auto f, reader.Parse(R"({"a":"x\u0000y"})"));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].str, absl::string_view("x\0y", 3));
}

// With enough readable bytes after the line it is parsed in place: what
// follows the line (here characters that would change its meaning) is not
// part of it. With fewer, the copy is parsed, with the same result.
TEST(FlatJsonTest, ParsesInPlaceOnlyTheLine) {
  const std::string line = R"({"k":"v","n":7})";
  for (size_t after : {size_t{0}, size_t{1}, FlatJsonReader::kPadding - 1,
                       FlatJsonReader::kPadding, size_t{200}}) {
    const std::string buf = line + std::string(after, '"');
    FlatJsonReader reader;
    ASSERT_OK_AND_ASSIGN(
        auto f, reader.Parse(absl::string_view(buf).substr(0, line.size()),
                             buf.size()));
    ASSERT_EQ(f.size(), 2u) << after;
    EXPECT_EQ(f[0].str, "v") << after;
    EXPECT_EQ(f[1].uint, 7u) << after;
  }
}

// Long lines grow the parser's buffers; shorter ones after still parse, and
// a refused line does not spoil the next.
TEST(FlatJsonTest, LongLinesAndReuse) {
  FlatJsonReader reader;
  const std::string big(1 << 20, 'x');
  ASSERT_OK_AND_ASSIGN(auto f,
                       reader.Parse("{\"" + big + "\":\"" + big + "\"}"));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].key.size(), big.size());
  EXPECT_EQ(f[0].str, big);
  EXPECT_FALSE(reader.Parse("{\"a\":\"" + big + "}").ok());
  ASSERT_OK_AND_ASSIGN(auto g, reader.Parse(R"({"a":1})"));
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].uint, 1u);
}

TEST(FlatJsonTest, EscapesOnOutput) {
  std::string out;
  AppendJsonString("a\"b\\c\n\x01\xc3\xa9", &out);
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"");
  FlatJsonReader reader;
  ASSERT_OK_AND_ASSIGN(auto back, reader.Parse("{\"k\":" + out + "}"));
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].str, "a\"b\\c\n\x01\xc3\xa9");
}

}  // namespace
}  // namespace physpool::cli
