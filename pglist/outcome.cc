// SPDX-License-Identifier: Apache-2.0
#include "pglist/outcome.h"

#include "absl/strings/cord.h"

namespace physpool::pglist {
namespace {
constexpr char kReasonUrl[] = "type.physpool.dev/physpool.pglist.FailReason";
}  // namespace

absl::string_view PathName(Path p) {
  switch (p) {
    case Path::kSimple:
      return "simple";
    case Path::kContig:
      return "contig";
    case Path::kMulti:
      return "multi";
    case Path::kAggressive:
      return "aggressive";
    case Path::kClaim:
      return "claim";
  }
  return "unknown";
}

absl::string_view FailReasonName(FailReason r) {
  switch (r) {
    case FailReason::kNone:
      return "none";
    case FailReason::kInvalid:
      return "invalid";
    case FailReason::kReserve:
      return "reserve";
    case FailReason::kNoSpace:
      return "no_space";
    case FailReason::kNeverFits:
      return "never_fits";
    case FailReason::kNoReclaim:
      return "no_reclaim";
  }
  return "unknown";
}

absl::Status FailWith(absl::StatusCode code, FailReason reason,
                      absl::string_view message) {
  absl::Status s(code, message);
  s.SetPayload(kReasonUrl, absl::Cord(FailReasonName(reason)));
  return s;
}

FailReason FailReasonOf(const absl::Status& s) {
  auto payload = s.GetPayload(kReasonUrl);
  if (!payload) return FailReason::kNone;
  for (int i = 0; i < kNumFailReasons; ++i) {
    const auto r = static_cast<FailReason>(i);
    if (*payload == FailReasonName(r)) return r;
  }
  return FailReason::kNone;
}

}  // namespace physpool::pglist
