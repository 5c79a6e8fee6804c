// SPDX-License-Identifier: Apache-2.0
// The fingerprint of an Allocate request (docs/api.md, "Request ids"): a
// retry with the same request id must repeat the request, and is told
// FAILED_PRECONDITION if it does not. Two requests that differ in anything
// that shapes the lease (size, window, device, alignment, boundary, runs,
// NUMA node and strictness, preemptibility, reclaim permission, TTL,
// label, access token hash) never share a fingerprint: every field is
// encoded with its length and the whole hashed with SHA-256 (all 256
// bits). How long a request may wait (may_wait, its deadline) is not part
// of it: a retry may wait longer or not at all.
//
// State: none. Thread safety: pure functions, any thread. I/O: none.
// REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_REQUEST_FINGERPRINT_H_
#define PHYSPOOL_SERVER_REQUEST_FINGERPRINT_H_

#include <string>

#include "server/lease/wait_queue.h"

namespace physpool::server {

// "2:" and 64 lowercase hex digits.
std::string RequestFingerprint(const AllocateParams& p);

// Whether `stored` (of a lease granted before, maybe by an older daemon) is
// the fingerprint of `p`. Fingerprints of daemons before this one (16 hex
// digits, a hash of fields joined by '|') are compared as they made them.
bool SameRequest(const std::string& stored, const AllocateParams& p);

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_REQUEST_FINGERPRINT_H_
