// SPDX-License-Identifier: Apache-2.0
// RequestIds: an answer goes out after the turn, and a request id keeps
// exactly the final errors a retry must get again (and not those a retry
// may get past); the text of a mismatched retry.
#include "server/lease/request_ids.h"

#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"
#include "server/core/fake_clock.h"
#include "server/core/turn_testing.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;

class RequestIdsTest : public ::testing::Test {
 protected:
  RequestIdsTest()
      : tt_(&clock_), lessor_(absl::Seconds(10), 16), ids_(&lessor_) {
    tenant_.name = "alice";
  }

  AllocateParams WithId(const std::string& rid) {
    AllocateParams p;
    p.req.bytes = 4096;
    p.request_id = rid;
    return p;
  }

  // Answers `r` in a turn; the answer the caller got.
  absl::StatusOr<LeaseInfo> Answer(absl::StatusOr<LeaseInfo> r,
                                   const AllocateParams& p,
                                   const std::string& fp = "fp") {
    std::optional<absl::StatusOr<LeaseInfo>> got;
    auto t = tt_.Begin();
    ids_.Answer(
        *t, [&](absl::StatusOr<LeaseInfo> v) { got = std::move(v); }, r,
        tenant_, p, fp);
    EXPECT_FALSE(got.has_value()) << "answered under the lock";
    tt_.End(*t);
    EXPECT_TRUE(got.has_value());
    return got.value_or(absl::InternalError("no answer"));
  }

  FakeClock clock_;
  TurnTesting tt_;
  Lessor lessor_;
  RequestIds ids_;
  Tenant tenant_;
};

TEST_F(RequestIdsTest, TheAnswerRunsAfterTheTurnWithTheResult) {
  LeaseInfo info;
  info.id = "lease-1";
  absl::StatusOr<LeaseInfo> got = Answer(info, WithId("r1"));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->id, "lease-1");
  // A success is the lessor's to remember (the lease), not a failure.
  EXPECT_EQ(lessor_.FailureOf("alice", "r1"), std::nullopt);
}

TEST_F(RequestIdsTest, FinalErrorsAreRememberedWithTheFingerprint) {
  const absl::StatusCode remembered[] = {
      absl::StatusCode::kInvalidArgument, absl::StatusCode::kResourceExhausted,
      absl::StatusCode::kDeadlineExceeded, absl::StatusCode::kPermissionDenied};
  int i = 0;
  for (absl::StatusCode code : remembered) {
    const std::string rid = "r" + std::to_string(i++);
    const absl::Status s(code, "final " + rid);
    EXPECT_THAT(Answer(s, WithId(rid), "fp-" + rid), StatusIs(code));
    auto f = lessor_.FailureOf("alice", rid);
    ASSERT_TRUE(f.has_value()) << s;
    EXPECT_EQ(f->first, s);
    EXPECT_EQ(f->second, "fp-" + rid);
  }
}

TEST_F(RequestIdsTest, ErrorsARetryMayGetPastAreNotRemembered) {
  const absl::StatusCode forgotten[] = {
      absl::StatusCode::kUnavailable,    absl::StatusCode::kFailedPrecondition,
      absl::StatusCode::kCancelled,      absl::StatusCode::kAborted,
      absl::StatusCode::kInternal,       absl::StatusCode::kNotFound,
      absl::StatusCode::kUnauthenticated};
  int i = 0;
  for (absl::StatusCode code : forgotten) {
    const std::string rid = "r" + std::to_string(i++);
    EXPECT_THAT(Answer(absl::Status(code, "x"), WithId(rid)), StatusIs(code));
    EXPECT_EQ(lessor_.FailureOf("alice", rid), std::nullopt)
        << absl::StatusCodeToString(code);
  }
}

TEST_F(RequestIdsTest, ARequestWithoutAnIdRemembersNothing) {
  EXPECT_THAT(Answer(absl::ResourceExhaustedError("quota"), WithId("")),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(lessor_.FailureOf("alice", ""), std::nullopt);
}

TEST_F(RequestIdsTest, AFailureIsRememberedEvenWithNoOneToAnswer) {
  auto t = tt_.Begin();
  ids_.Answer(*t, nullptr, absl::DeadlineExceededError("waited"), tenant_,
              WithId("r1"), "fp");
  tt_.End(*t);
  ASSERT_TRUE(lessor_.FailureOf("alice", "r1").has_value());
  EXPECT_THAT(lessor_.FailureOf("alice", "r1")->first,
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST(RequestIdsMismatchTest, SaysWhatTheIdWasUsedForAndWhatToDo) {
  EXPECT_THAT(RequestIds::Mismatch("r9", "lease L1"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "request_id \"r9\" was used for lease L1 with other "
                       "parameters; a retry must repeat the request"));
}

}  // namespace
}  // namespace physpool::server
