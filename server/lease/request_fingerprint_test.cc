// SPDX-License-Identifier: Apache-2.0
#include "server/lease/request_fingerprint.h"

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "util/sha256.h"

namespace physpool::server {
namespace {

AllocateParams Base() {
  AllocateParams p;
  p.req.bytes = 1 << 20;
  return p;
}

TEST(RequestFingerprintTest, EveryFieldThatShapesTheLeaseChangesIt) {
  const std::vector<std::function<void(AllocateParams&)>> changes = {
      [](AllocateParams& p) { p.req.bytes += 4096; },
      [](AllocateParams& p) { p.req.low = 1; },
      [](AllocateParams& p) { p.req.high = 1 << 30; },
      [](AllocateParams& p) { p.req.alignment = 1 << 16; },
      [](AllocateParams& p) { p.req.boundary = 1 << 21; },
      [](AllocateParams& p) { p.req.max_segments = 1; },
      [](AllocateParams& p) { p.req.numa = 0; },
      [](AllocateParams& p) { p.numa_strict = true; },
      [](AllocateParams& p) { p.req.preemptible = true; },
      [](AllocateParams& p) { p.may_reclaim = true; },
      [](AllocateParams& p) { p.ttl = absl::Seconds(5); },
      [](AllocateParams& p) { p.device = "0000:00:04.0"; },
      [](AllocateParams& p) { p.label = "x"; },
      [](AllocateParams& p) { p.access_sha256 = Sha256Hex("t"); },
  };
  std::set<std::string> seen = {RequestFingerprint(Base())};
  for (const auto& change : changes) {
    AllocateParams p = Base();
    change(p);
    EXPECT_TRUE(seen.insert(RequestFingerprint(p)).second);
  }
}

TEST(RequestFingerprintTest, HowLongItWaitsIsNotPartOfIt) {
  AllocateParams a = Base(), b = Base();
  b.may_wait = true;
  b.request_id = "r";
  EXPECT_EQ(RequestFingerprint(a), RequestFingerprint(b));
}

// The fingerprint before this one joined fields with '|': a label that
// ends in "|<hash>" without an access token and the shorter label with that
// token were one request.
TEST(RequestFingerprintTest, NoFieldCanBorrowFromTheNext) {
  const std::string sha = Sha256Hex("token");
  AllocateParams a = Base(), b = Base();
  a.label = "x|" + sha;
  b.label = "x";
  b.access_sha256 = sha;
  EXPECT_NE(RequestFingerprint(a), RequestFingerprint(b));
  a = Base();
  b = Base();
  a.label = "3:abc";
  b.device = "abc";
  EXPECT_NE(RequestFingerprint(a), RequestFingerprint(b));
}

TEST(RequestFingerprintTest, OlderDaemonsFingerprintsStillMatchTheirRequest) {
  AllocateParams p = Base();
  p.label = "job";
  const std::string legacy =
      Sha256Hex("1048576|0|18446744073709551615|0|0|0|-1|0|0|job")
          .substr(0, 16);
  EXPECT_TRUE(SameRequest(legacy, p));
  p.label = "other";
  EXPECT_FALSE(SameRequest(legacy, p));
  EXPECT_TRUE(SameRequest(RequestFingerprint(p), p));
}

}  // namespace
}  // namespace physpool::server
