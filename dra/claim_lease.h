// SPDX-License-Identifier: Apache-2.0
// How a claim's leases are named at physpoold: the label that ties a lease
// to its claim ("dra-claim=<uid> <ns>/<name> <request>"), and the random
// request ids and access tokens the driver makes.
//
// State: none. Thread safety: every function is safe to call from any
// thread. I/O: RandomHex reads getrandom(2); nothing else does I/O.
#ifndef PHYSPOOL_DRA_CLAIM_LEASE_H_
#define PHYSPOOL_DRA_CLAIM_LEASE_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace physpool::dra {

// The label of a claim's lease for one request (at most 256 bytes, what
// physpoold keeps; the UID comes first so that it always survives).
std::string ClaimLeaseLabel(const std::string& uid, const std::string& ns,
                            const std::string& name,
                            const std::string& request);

// The claim UID a lease label names ("" if it is not a claim's).
std::string UidOfLabel(const std::string& label);

// `bytes` random bytes as lowercase hex (2 * bytes characters).
std::string RandomHex(size_t bytes);

// A gRPC status as an absl one, its message prefixed by `what`.
absl::Status FromGrpc(const grpc::Status& s, absl::string_view what);

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_CLAIM_LEASE_H_
