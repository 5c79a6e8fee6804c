// SPDX-License-Identifier: Apache-2.0
// Who is calling: a bearer token ("authorization: Bearer <token>"), else an
// mTLS client certificate's common name, else (embedded default,
// implicit_tenant: true) the implicit tenant, but only for a call that came
// over the unix socket: over TCP every caller must present credentials.
// UNAUTHENTICATED otherwise. A token no tenant holds is looked up among the
// lease access tokens (access_tokens.h).
//
// State: none of its own (the registry and the access lookup it is given).
// Thread safety: thread-safe; never takes the pool's lock (the registry and
// the access tokens have locks of their own).
// I/O: none.
// REQUIRES: `tenants` outlives it; `access` may be called from any thread.
#ifndef PHYSPOOL_SERVER_RPC_AUTHENTICATOR_H_
#define PHYSPOOL_SERVER_RPC_AUTHENTICATOR_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/lease/tenants.h"

namespace physpool::server {

class Authenticator {
 public:
  // `access` (optional) names the tenant whose live leases carry a lease
  // access token's hash (PoolManager::TenantOfAccessToken).
  using AccessLookup =
      std::function<std::optional<std::string>(const std::string& sha256)>;
  Authenticator(const TenantRegistry* tenants, bool implicit_tenant,
                AccessLookup access = nullptr)
      : tenants_(tenants),
        implicit_(implicit_tenant),
        access_(std::move(access)) {}
  absl::StatusOr<Tenant> Identify(const grpc::ServerContextBase& ctx) const;
  // The tenant of a bare bearer token ("" = none given: the implicit
  // tenant if there is one), for the fd socket.
  absl::StatusOr<Tenant> IdentifyToken(absl::string_view token) const;

  // The implicit tenant of the embedded default: all roles.
  static Tenant Implicit();

 private:
  const TenantRegistry* tenants_;
  bool implicit_;
  AccessLookup access_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_RPC_AUTHENTICATOR_H_
