// SPDX-License-Identifier: Apache-2.0
// Who may call: tenants identified by bearer token (the config keeps only
// SHA-256 hashes) or by mTLS client certificate common name, with roles and
// limits.
//
// State: TenantRegistry's tenants, by name, token hash and common name.
// Thread safety: TenantRegistry is thread-safe (its own mutex, taken after
// the pool's lock when the quota reads limits); the rest are values and
// pure functions.
// I/O: none.
// REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_TENANTS_H_
#define PHYSPOOL_SERVER_TENANTS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "util/sha256.h"

namespace physpool::server {

enum Role : uint32_t {
  kRoleTenant = 1,      // allocate and manage its own leases
  kRolePrivileged = 2,  // may allocate from the reserve and get device fds
  kRoleAdmin = 4,       // the Admin service
};

struct TenantLimits {
  uint64_t max_bytes = 0;   // 0 = unlimited
  uint32_t max_leases = 0;  // 0 = unlimited
};

struct Tenant {
  std::string name;
  uint32_t roles = kRoleTenant;
  TenantLimits limits;
  std::vector<std::string> token_sha256;  // lowercase hex
  std::vector<std::string> cert_common_names;
  // Set for the holder of a lease access token (its SHA-256, hex): the
  // tenant's name and the tenant role only, and of its leases only those
  // granted with that token (GetLease, the fd socket's backing).
  std::string lease_scope;

  bool Has(Role r) const { return (roles & r) != 0; }
};

// The implicit tenant's name (embedded default, implicit_tenant: true).
inline constexpr char kImplicitTenantName[] = "default";

// The implicit tenant (embedded default, implicit_tenant: true): every
// role, no credentials; reached through the unix socket only.
Tenant ImplicitTenant();

// Token hashes: Sha256Hex and IsSha256Hex (util/sha256.h).
using ::physpool::IsSha256Hex;
using ::physpool::Sha256Hex;

// "tenant,privileged" <-> role bits. INVALID_ARGUMENT for unknown names.
absl::StatusOr<uint32_t> ParseRoles(const std::vector<std::string>& names);
std::vector<std::string> RoleNames(uint32_t roles);

class TenantRegistry {
 public:
  explicit TenantRegistry(std::vector<Tenant> tenants);

  // The tenant holding `token`, or nullopt.
  std::optional<Tenant> ByToken(absl::string_view token) const;
  std::optional<Tenant> ByCommonName(absl::string_view cn) const;
  std::optional<Tenant> ByName(absl::string_view name) const;
  std::vector<Tenant> List() const;
  // Replaces every tenant at once (a configuration reload): a caller is
  // identified against the old set or the new one, never a mix.
  void Replace(std::vector<Tenant> tenants);
  // NOT_FOUND for an unknown tenant.
  absl::StatusOr<Tenant> SetLimits(absl::string_view name, TenantLimits limits);

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, Tenant> by_name_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> by_token_hash_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> by_cn_ ABSL_GUARDED_BY(mu_);
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_TENANTS_H_
