// SPDX-License-Identifier: Apache-2.0
#include "cli/flat_json.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"

namespace physpool::cli {
namespace {

using ::testing::HasSubstr;

TEST(FlatJsonTest, ParsesStringsNumbersBooleans) {
  ASSERT_OK_AND_ASSIGN(
      auto f,
      ParseFlatObject(
          R"( {"a":"x\"y\u00e9\ud83d\ude00", "b" : 18446744073709551615, "c":true,"d":false} )"));
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0].str, "x\"y\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(f[1].uint, 18446744073709551615u);
  EXPECT_TRUE(f[2].boolean);
  EXPECT_FALSE(f[3].boolean);
  ASSERT_OK_AND_ASSIGN(auto empty, ParseFlatObject("{}"));
  EXPECT_TRUE(empty.empty());
}

TEST(FlatJsonTest, RejectsWithTheColumn) {
  struct Case {
    const char* text;
    const char* error;
  } cases[] = {
      {"", "column 1: expected '{'"},
      {"[1]", "column 1: expected '{'"},
      {"{\"a\":1", "expected ',' or '}'"},
      {"{\"a\":-1}", "column 6: negative"},
      {"{\"a\":1.5}", "no fraction"},
      {"{\"a\":1e3}", "no fraction"},
      {"{\"a\":18446744073709551616}", "above 2^64 - 1"},
      {"{\"a\":01}", "leading zeros"},
      {"{\"a\":null}", "null is not allowed"},
      {"{\"a\":{}}", "nested"},
      {"{\"a\":1,\"a\":2}", "duplicate key \"a\""},
      {"{\"a\":\"x}", "unterminated string"},
      {"{\"a\":\"\\q\"}", "bad escape"},
      {"{\"a\":\"\\ud800\"}", "unpaired surrogate"},
      {"{\"a\":1} x", "unexpected characters"},
      {"{a:1}", "expected a key"},
      {"{\"a\":tru}", "expected a string"},
  };
  for (const Case& c : cases) {
    auto r = ParseFlatObject(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.error))
        << c.text;
  }
}

TEST(FlatJsonTest, EscapesOnOutput) {
  std::string out;
  AppendJsonString("a\"b\\c\n\x01", &out);
  EXPECT_EQ(out, R"("a\"b\\c\n\u0001")");
  ASSERT_OK_AND_ASSIGN(auto back, ParseFlatObject("{\"k\":" + out + "}"));
  EXPECT_EQ(back[0].str, "a\"b\\c\n\x01");
}

}  // namespace
}  // namespace physpool::cli
