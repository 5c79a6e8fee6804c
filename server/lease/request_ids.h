// SPDX-License-Identifier: Apache-2.0
// Request ids (AIP-155, docs/api.md "Request ids"): a retry of an Allocate
// with the same id from the same tenant gets the same lease or the same
// final error, or takes over the wait or reclaim in progress; a retry with
// other parameters is refused. Answering a request through here remembers
// its final error (invalid argument, resource exhausted, deadline exceeded,
// permission denied) for its id.
//
// State: none (the errors are remembered in the Lessor).
// Thread safety: not thread-safe; Answer takes the Turn that proves the
// pool's lock (Mismatch is a pure function).
// I/O: none.
// REQUIRES: the lessor outlives it.
#ifndef PHYSPOOL_SERVER_LEASE_REQUEST_IDS_H_
#define PHYSPOOL_SERVER_LEASE_REQUEST_IDS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/turn.h"
#include "server/core/types.h"
#include "server/lease/lessor.h"
#include "server/lease/tenants.h"

namespace physpool::server {

class RequestIds {
 public:
  explicit RequestIds(Lessor* lessor) : lessor_(lessor) {}

  // Answers `done` with `r` after the turn; a final error of a request
  // with an id is remembered for retries.
  void Answer(Turn& t, AllocDone done, absl::StatusOr<LeaseInfo> r,
              const Tenant& tenant, const AllocateParams& p,
              const std::string& fp);
  // The answer to a retry with other parameters than the request `what`.
  static absl::Status Mismatch(const std::string& request_id,
                               absl::string_view what);

 private:
  Lessor* const lessor_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_REQUEST_IDS_H_
