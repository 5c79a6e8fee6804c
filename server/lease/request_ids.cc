// SPDX-License-Identifier: Apache-2.0
#include "server/lease/request_ids.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace physpool::server {
namespace {

// Final answers a request id remembers: a retry gets the same. Not
// remembered: what a retry may well get past (the store, shutdown,
// cancellation, a retry that took over).
bool Remembered(absl::StatusCode c) {
  return c == absl::StatusCode::kInvalidArgument ||
         c == absl::StatusCode::kResourceExhausted ||
         c == absl::StatusCode::kDeadlineExceeded ||
         c == absl::StatusCode::kPermissionDenied;
}

}  // namespace

void RequestIds::Answer(Turn& t, AllocDone done, absl::StatusOr<LeaseInfo> r,
                        const Tenant& tenant, const AllocateParams& p,
                        const std::string& fp) {
  if (!r.ok() && !p.request_id.empty() && Remembered(r.status().code())) {
    lessor_->RememberFailure(tenant.name, p.request_id, fp, r.status());
  }
  if (done) t.Later([d = std::move(done), r = std::move(r)] { d(r); });
}

absl::Status RequestIds::Mismatch(const std::string& request_id,
                                  absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat("request_id \"", request_id, "\" was used for ", what,
                   " with other parameters; a retry must repeat the request"));
}

}  // namespace physpool::server
