// SPDX-License-Identifier: Apache-2.0
#include "cli/ctl_context.h"

#include <cstdio>

namespace physpool::cli {
namespace {

const char* CodeName(grpc::StatusCode c) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i <= 16 ? kNames[i] : "UNKNOWN";
}

}  // namespace

int ExitCodeFor(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK:
      return 0;
    case grpc::StatusCode::UNAVAILABLE:
      return 3;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return 4;
    case grpc::StatusCode::NOT_FOUND:
      return 5;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 6;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 7;
    default:
      return kExitFailed;
  }
}

int Fail(const grpc::Status& s) {
  std::fprintf(stderr, "Error: %s: %s\n", CodeName(s.error_code()),
               s.error_message().c_str());
  return ExitCodeFor(s.error_code());
}

int Fail(const absl::Status& s) {
  return Fail(grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                           std::string(s.message())));
}

}  // namespace physpool::cli
