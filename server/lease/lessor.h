// SPDX-License-Identifier: Apache-2.0
// The leases: who holds what until when. Grants, renewals and ends over an
// expiry queue on the injected clock, the tenants' usage, the request ids
// of the grants (AIP-155) and a bounded memory of ended leases (to answer a
// second Release and say why a lease is gone). Expiry *publishes* lease ids
// (Due); the Ender (end.h) ends them. Modelled on etcd's lessor.
//
// A lease is first kCommitting (granted in memory, its store write in
// flight: counted in usage, invisible to its tenant), then kLive, maybe
// kEnding (its owner or an admin asked to end it, the store write in
// flight), then gone.
//
// State: the leases by id (node-based: a Lease* and its id stay put until
// the lease leaves), and indexes that point into them — ids in order (for
// paging), expiries and warnings in time order (by allocation), the
// allocations, request ids — plus usage per tenant and the bounded memory of
// ended leases and failed request ids. Restore() takes a restarted daemon's
// leases in one pass (sorted indexes built in order: linear in the leases).
// Thread safety: not thread-safe; its callers (flows in a Turn) hold the
// pool's lock, though its methods take no Turn. It updates `access` (a lock
// of its own) under the pool's lock.
// I/O: none.
// REQUIRES: `access`, if given, outlives it.
#ifndef PHYSPOOL_SERVER_LEASE_LESSOR_H_
#define PHYSPOOL_SERVER_LEASE_LESSOR_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pglist/outcome.h"
#include "server/core/types.h"
#include "server/lease/access_tokens.h"

namespace physpool::server {

class Lessor {
 public:
  enum class State { kCommitting, kLive, kEnding };
  struct Lease {
    LeaseInfo info;
    pglist::AllocationId alloc = 0;
    State state = State::kCommitting;
    bool warned = false;     // EXPIRING sent for the current expiry
    std::string request_fp;  // fingerprint of the granting request
  };
  // What is remembered of an ended lease.
  struct Ended {
    std::string tenant;
    std::string how;  // released, expired, revoked, preempted
    std::string request_id;
  };

  // `ended_memory`: how many ended leases are remembered. `access` (may be
  // null: the lessor keeps its own) is kept up to date with the access
  // token hashes of its leases; it must outlive the lessor.
  Lessor(absl::Duration expiring_warning, size_t ended_memory,
         AccessTokens* access = nullptr);

  // Adds a lease in `state` (kCommitting or kLive) and counts its usage.
  // REQUIRES: its id is new.
  Lease& Add(Lease lease);
  // Adds a restarted daemon's leases (kLive), as Add would one by one.
  // REQUIRES: the lessor is empty; the ids are distinct.
  void Restore(std::vector<Lease> leases);
  // kCommitting -> kLive: into the expiry queue.
  void Activate(const std::string& id);
  // kLive <-> kEnding. Back to kLive, a lease not yet warned is warned
  // again when due (its warning may have fallen due while it was ending).
  void SetEnding(const std::string& id, bool ending);
  // Moves the expiry of a kLive lease.
  void SetExpiry(const std::string& id, absl::Time expires, absl::Duration ttl);
  // Ends a lease: out of every index, its usage returned, remembered as
  // ended `how`. Returns it. REQUIRES: it exists.
  Lease End(const std::string& id, const std::string& how);
  // Drops a kCommitting lease whose grant failed: usage returned, not
  // remembered. REQUIRES: it exists.
  Lease Discard(const std::string& id);

  Lease* Find(const std::string& id);
  // The caller's lease for Renew/Get/Release: NOT_FOUND if unknown, still
  // committing, or ended (saying how); PERMISSION_DENIED if another
  // tenant's or, for a caller holding an access token (`scope`, its hash;
  // "" = a tenant's own credentials), a lease granted with another token.
  absl::StatusOr<Lease*> Owned(const std::string& tenant, const std::string& id,
                               const std::string& scope = "");
  // The tenant whose live or committing leases were granted with access
  // token hash `sha`, if any.
  std::optional<std::string> TenantOfAccess(const std::string& sha) const;
  const Ended* FindEnded(const std::string& id) const;
  // The lease (any state) or ended lease granted for `tenant`'s request id.
  Lease* ByRequest(const std::string& tenant, const std::string& request_id);
  std::optional<std::pair<std::string, Ended>> EndedByRequest(
      const std::string& tenant, const std::string& request_id) const;
  // Remembers a request id's final error (bounded like ended leases).
  void RememberFailure(const std::string& tenant, const std::string& request_id,
                       const std::string& fp, absl::Status status);
  // The remembered error and the request's fingerprint.
  std::optional<std::pair<absl::Status, std::string>> FailureOf(
      const std::string& tenant, const std::string& request_id) const;

  // Live leases whose expiry is at or before `now`, oldest first.
  std::vector<std::string> Due(absl::Time now) const;
  // Live leases due an EXPIRING warning at `now`; marks them warned.
  std::vector<std::string> TakeWarnings(absl::Time now);
  // The next expiry or warning time, if any.
  std::optional<absl::Time> NextDeadline() const;
  // A live lease's own first deadline: its EXPIRING warning, or its expiry.
  absl::Time FirstDeadline(const LeaseInfo& info) const {
    return std::min(info.expires, info.expires - warning_);
  }

  // Live and ending leases in id order, from the first id above `after`.
  // kCommitting ones are skipped.
  template <typename F>
  void ForEachFrom(const std::string& after, F f) const {
    for (auto it = ids_.upper_bound(after); it != ids_.end(); ++it) {
      const Lease& l = leases_.find(*it)->second;
      if (l.state != State::kCommitting && !f(l)) return;
    }
  }
  const std::string* LeaseOf(pglist::AllocationId alloc) const;
  TenantUsage Usage(const std::string& tenant) const;
  const std::map<std::string, TenantUsage>& usage() const { return usage_; }
  size_t size() const { return leases_.size(); }

 private:
  static std::string Key(const std::string& tenant, const std::string& rid) {
    return tenant + '\n' + rid;
  }
  // (deadline, the lease's allocation): ties go to the older allocation.
  using Deadline = std::pair<absl::Time, pglist::AllocationId>;
  // Usage, allocation, request id and access token of `l` (in leases_).
  void Index(Lease& l);
  // Into / out of the expiry and warning queues.
  void Queue(const Lease& l);
  void Unqueue(const Lease& l);
  void Remember(const std::string& id, Ended e);

  const absl::Duration warning_;
  const size_t ended_memory_;
  absl::node_hash_map<std::string, Lease> leases_;
  absl::btree_set<absl::string_view> ids_;  // leases_'s keys, in order
  absl::btree_set<Deadline> expiry_;        // kLive, kEnding
  absl::btree_set<Deadline> warn_;
  absl::flat_hash_map<pglist::AllocationId, Lease*> by_alloc_;
  absl::flat_hash_map<std::string, std::string> by_request_;  // key -> id
  AccessTokens own_access_;
  AccessTokens* const access_;  // own_access_ or the caller's
  std::map<std::string, TenantUsage> usage_;
  // Ended leases (bounded), and request ids they or failures used.
  absl::flat_hash_map<std::string, Ended> ended_;
  std::deque<std::string> ended_order_;
  absl::flat_hash_map<std::string, std::string> ended_by_request_;
  absl::flat_hash_map<std::string, std::pair<absl::Status, std::string>>
      failures_;
  std::deque<std::string> failure_order_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_LESSOR_H_
