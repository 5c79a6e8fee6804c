// SPDX-License-Identifier: Apache-2.0
#include "server/rpc/authenticator.h"

#include "absl/strings/match.h"
#include "util/sha256.h"

namespace physpool::server {

Tenant Authenticator::Implicit() { return ImplicitTenant(); }

absl::StatusOr<Tenant> Authenticator::IdentifyToken(
    absl::string_view token) const {
  if (token.empty()) {
    if (implicit_) return Implicit();
    return absl::UnauthenticatedError("no credentials: send a token");
  }
  if (auto t = tenants_->ByToken(token)) return *t;
  if (access_) {
    // A lease access token: the owning tenant's name and the tenant role,
    // scoped to the leases granted with it.
    const std::string sha = Sha256Hex(token);
    if (std::optional<std::string> owner = access_(sha)) {
      Tenant t;
      t.name = *owner;
      t.roles = kRoleTenant;
      t.lease_scope = sha;
      return t;
    }
  }
  return absl::UnauthenticatedError("unknown bearer token");
}

absl::StatusOr<Tenant> Authenticator::Identify(
    const grpc::ServerContextBase& ctx) const {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it != md.end()) {
    const absl::string_view v(it->second.data(), it->second.size());
    if (!absl::StartsWithIgnoreCase(v, "bearer ")) {
      return absl::UnauthenticatedError(
          "authorization must be \"Bearer <token>\"");
    }
    return IdentifyToken(v.substr(7));
  }
  if (auto auth = ctx.auth_context(); auth && auth->IsPeerAuthenticated()) {
    for (const auto& cn : auth->FindPropertyValues("x509_common_name")) {
      if (auto t = tenants_->ByCommonName(std::string(cn.data(), cn.size())))
        return *t;
    }
    return absl::UnauthenticatedError("the client certificate names no tenant");
  }
  // The implicit tenant is whoever may open the unix socket (its mode and
  // group are the operator's: listen.unix_mode, listen.unix_group); over
  // TCP anyone on the host could connect, so TCP always needs credentials.
  if (implicit_ && absl::StartsWith(ctx.peer(), "unix:")) return Implicit();
  if (implicit_) {
    return absl::UnauthenticatedError(
        "no credentials: the implicit tenant answers on the unix socket only; "
        "over TCP send \"authorization: Bearer <token>\" or a client "
        "certificate (docs/security.md)");
  }
  return absl::UnauthenticatedError(
      "no credentials: send \"authorization: Bearer <token>\"");
}

}  // namespace physpool::server
