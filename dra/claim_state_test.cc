// SPDX-License-Identifier: Apache-2.0
#include "dra/claim_state.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>

namespace physpool::dra {
namespace {

class ClaimStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/physpool-claims-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/state.json";
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string dir_, path_;
};

ClaimRecord Record(const std::string& uid, ClaimRecord::Phase phase) {
  ClaimRecord r;
  r.uid = uid;
  r.ns = "ml";
  r.name = "weights";
  r.phase = phase;
  r.token = "t0k3n";
  r.results = {{"mem", "numa0", 1 << 20, "rid-1", "l-1"},
               {"b", "numa1", 3 << 20, "rid-2", ""}};
  return r;
}

TEST_F(ClaimStateTest, WhatIsPutIsWhatTheNextLoadSees) {
  auto st = ClaimState::Load(path_);
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(st->claims().empty());
  ASSERT_TRUE(st->Put(Record("u1", ClaimRecord::Phase::kPreparing)).ok());
  ASSERT_TRUE(st->Put(Record("u2", ClaimRecord::Phase::kPrepared)).ok());
  ASSERT_TRUE(st->Put(Record("u1", ClaimRecord::Phase::kUnpreparing)).ok());
  ASSERT_TRUE(st->Erase("u2").ok());
  ASSERT_TRUE(st->Erase("never").ok());
  auto again = ClaimState::Load(path_);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->claims().size(), 1u);
  const ClaimRecord* r = again->Find("u1");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->phase, ClaimRecord::Phase::kUnpreparing);
  EXPECT_EQ(r->token, "t0k3n");
  ASSERT_EQ(r->results.size(), 2u);
  EXPECT_EQ(r->results[1].device, "numa1");
  EXPECT_EQ(r->results[1].bytes, 3u << 20);
  EXPECT_EQ(r->results[0].lease, "l-1");
  EXPECT_EQ(r->results[1].request_id, "rid-2");
  // No temporary is left behind.
  EXPECT_NE(access((path_ + ".tmp").c_str(), F_OK), 0);
}

TEST_F(ClaimStateTest, ADamagedFileIsRefusedNamingIt) {
  for (const char* text :
       {"", "{", "[]", "{\"claims\": 3}",
        "{\"claims\": {\"u\": {\"namespace\": \"n\"}}}",
        "{\"claims\": {\"u\": {\"namespace\": \"n\", \"name\": \"x\", "
        "\"token\": \"t\", \"phase\": \"odd\", \"results\": []}}}"}) {
    auto st = ClaimState::Parse(path_, text);
    ASSERT_FALSE(st.ok()) << text;
    EXPECT_NE(std::string(st.status().message()).find(path_),
              std::string::npos);
  }
}

TEST_F(ClaimStateTest, AFailedSaveChangesNothing) {
  auto st = ClaimState::Load(dir_ + "/missing-dir/state.json");
  ASSERT_TRUE(st.ok());
  EXPECT_FALSE(st->Put(Record("u1", ClaimRecord::Phase::kPreparing)).ok());
  EXPECT_TRUE(st->claims().empty());
}

}  // namespace
}  // namespace physpool::dra
