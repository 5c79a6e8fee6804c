// SPDX-License-Identifier: Apache-2.0
// The driver's cleanup pass (docs/kubernetes.md, "Crashes and cleanup"):
//   1. finishes interrupted Unprepares, and unprepares claims the API
//      server no longer has, that have another UID under their name, or
//      that are no longer allocated on this node;
//   2. marks prepared claims whose lease ended (expired, revoked,
//      preempted) as needing preparing again, under new request ids;
//   3. releases the driver's claim leases that no claim record names.
// It goes on past a failing item and returns the first failure; an API
// server that cannot answer keeps the claim (the next pass asks again).
//
// State: none of its own; it reads and writes the ClaimState it is given.
// Thread safety: none; REQUIRES: the caller holds the driver's lock for
// the whole of Run, and the Ops it was given may be called under it.
// I/O: through the Ops (physpoold, the API server, the claim files) and
// the ClaimState (its file); logs to stderr.
#ifndef PHYSPOOL_DRA_CLEANUP_H_
#define PHYSPOOL_DRA_CLEANUP_H_

#include <functional>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "dra/claim_state.h"
#include "nlohmann/json.hpp"

namespace physpool::dra {

class CleanupPass {
 public:
  // What the pass does through the driver.
  struct Ops {
    // The driver's leases at physpoold: id -> label.
    std::function<absl::StatusOr<std::map<std::string, std::string>>()>
        list_leases;
    // The ResourceClaim; NOT_FOUND only when the API server says it is gone.
    std::function<absl::StatusOr<nlohmann::json>(const std::string& ns,
                                                 const std::string& name)>
        get_claim;
    // Unprepares a claim (releases its leases, removes its files and
    // record).
    std::function<absl::Status(const std::string& uid)> unprepare;
    // Releases a lease; gone already is success.
    std::function<absl::Status(const std::string& id)> release_lease;
  };

  CleanupPass(std::string driver_name, std::string node_name, Ops ops);

  absl::Status Run(ClaimState* state);

 private:
  // Why `r` must be unprepared ("" to keep it); `*unknown` set when the
  // API server could not say (the claim is kept).
  std::string WhyUnprepare(const ClaimRecord& r, absl::Status* unknown) const;
  // Step 2 for one prepared claim: true if a lease was gone.
  bool ForgetLostLeases(const std::map<std::string, std::string>& leases,
                        ClaimRecord* r) const;
  // Step 3.
  absl::Status ReleaseOrphans(const ClaimState& state,
                              const std::map<std::string, std::string>& leases,
                              absl::Status* first) const;

  const std::string driver_name_, node_name_;
  const Ops ops_;
};

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_CLEANUP_H_
