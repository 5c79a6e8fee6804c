// SPDX-License-Identifier: Apache-2.0
// Which tenant's live leases carry a lease access token's hash
// (AllocateRequest.access_token_sha256): the index the authenticator asks
// on every request that presents a token no tenant holds. It has a lock of
// its own so that such a request, which may come from anyone, never takes
// the pool's lock (an unauthenticated caller cannot slow the pool down).
//
// State: each hash's tenant and how many leases carry it.
// Thread safety: thread-safe (its own mutex). The Lessor updates it as
// leases come and go, under the pool's lock, which is taken before this
// one (never the other way round).
// I/O: none.
// REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_ACCESS_TOKENS_H_
#define PHYSPOOL_SERVER_ACCESS_TOKENS_H_

#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace physpool::server {

class AccessTokens {
 public:
  // One more lease of `tenant` carries `sha`.
  void Add(const std::string& sha, const std::string& tenant);
  // One lease carrying `sha` fewer.
  void Remove(const std::string& sha);
  // The tenant whose leases carry `sha`, if any lease does.
  std::optional<std::string> TenantOf(const std::string& sha) const;

 private:
  mutable absl::Mutex mu_;
  // hash -> (tenant, how many leases carry it)
  absl::flat_hash_map<std::string, std::pair<std::string, int>> by_sha_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_ACCESS_TOKENS_H_
