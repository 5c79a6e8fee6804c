// SPDX-License-Identifier: Apache-2.0
// GoogleTest matchers for absl::Status / StatusOr, Abseil-named look-alikes
// (Debian's Abseil 20220623 ships none).
#ifndef PHYSPOOL_PGLIST_TESTING_STATUS_MATCHERS_H_
#define PHYSPOOL_PGLIST_TESTING_STATUS_MATCHERS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace physpool::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

MATCHER_P(StatusIs, code, "has status code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code;
}

// The code, and the message matching `message` (a matcher of std::string).
MATCHER_P2(StatusIs, code, message,
           "has status code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::Matches(message)(std::string(s.message()));
}

}  // namespace physpool::testing

#define PHYSPOOL_CONCAT_INNER(a, b) a##b
#define PHYSPOOL_CONCAT(a, b) PHYSPOOL_CONCAT_INNER(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                  \
  auto PHYSPOOL_CONCAT(statusor_, __LINE__) = (expr);    \
  ASSERT_TRUE(PHYSPOOL_CONCAT(statusor_, __LINE__).ok()) \
      << PHYSPOOL_CONCAT(statusor_, __LINE__).status();  \
  lhs = std::move(*PHYSPOOL_CONCAT(statusor_, __LINE__))
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::physpool::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::physpool::testing::IsOk())

#endif  // PHYSPOOL_PGLIST_TESTING_STATUS_MATCHERS_H_
