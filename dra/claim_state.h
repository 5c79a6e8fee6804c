// SPDX-License-Identifier: Apache-2.0
// The driver's durable record of the claims it prepares: claim UID ->
// what it asked physpoold for and got. One JSON file, replaced atomically
// (write a temporary, fsync, rename, fsync the directory) on every change,
// so a kill -9 leaves the old record or the new one.
//
// The record is two-phase, like the kubelet plugins' checkpoints:
//   kPreparing    written before the first Allocate: the request ids and
//                 the access token, so a retry gets the same leases (the
//                 daemon answers a request id it has seen with its lease);
//   kPrepared     written once every lease is granted and the CDI spec is
//                 on disk, before NodePrepareResources answers;
//   kUnpreparing  written before the first Release; the record goes once
//                 every lease is released and the files are gone.
// Not thread-safe: the driver holds its lock.
#ifndef PHYSPOOL_DRA_CLAIM_STATE_H_
#define PHYSPOOL_DRA_CLAIM_STATE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace physpool::dra {

struct ClaimResult {
  std::string request;     // the claim's request name
  std::string device;      // the slice's device ("numa0", "pool")
  uint64_t bytes = 0;      // consumed capacity
  std::string request_id;  // AllocateRequest.request_id
  std::string lease;       // granted lease ("" until kPrepared)
};

struct ClaimRecord {
  enum class Phase { kPreparing, kPrepared, kUnpreparing };
  std::string uid, ns, name;
  Phase phase = Phase::kPreparing;
  std::string token;  // the access token of the claim's leases
  std::vector<ClaimResult> results;
};

const char* PhaseName(ClaimRecord::Phase p);

class ClaimState {
 public:
  // Loads `path` (missing: empty). FAILED_PRECONDITION for a damaged file,
  // naming it.
  static absl::StatusOr<ClaimState> Load(std::string path);
  // The same from the file's text (saved back to `path`).
  static absl::StatusOr<ClaimState> Parse(std::string path,
                                          const std::string& text);

  const std::map<std::string, ClaimRecord>& claims() const { return claims_; }
  const ClaimRecord* Find(const std::string& uid) const;
  // Durably stores `r` (replacing its UID's record) / removes `uid`.
  absl::Status Put(const ClaimRecord& r);
  absl::Status Erase(const std::string& uid);

 private:
  explicit ClaimState(std::string path) : path_(std::move(path)) {}
  absl::Status Save(const std::map<std::string, ClaimRecord>& claims) const;
  std::string path_;
  std::map<std::string, ClaimRecord> claims_;
};

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_CLAIM_STATE_H_
