// SPDX-License-Identifier: Apache-2.0
#include "server/lease/tenants.h"

#include "absl/strings/str_cat.h"

namespace physpool::server {

absl::StatusOr<uint32_t> ParseRoles(const std::vector<std::string>& names) {
  uint32_t roles = 0;
  for (const std::string& n : names) {
    if (n == "tenant") {
      roles |= kRoleTenant;
    } else if (n == "privileged") {
      roles |= kRolePrivileged;
    } else if (n == "admin") {
      roles |= kRoleAdmin;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown role \"", n, "\" (expected tenant, privileged or admin)"));
    }
  }
  return roles;
}

std::vector<std::string> RoleNames(uint32_t roles) {
  std::vector<std::string> out;
  if (roles & kRoleTenant) out.push_back("tenant");
  if (roles & kRolePrivileged) out.push_back("privileged");
  if (roles & kRoleAdmin) out.push_back("admin");
  return out;
}

Tenant ImplicitTenant() {
  Tenant t;
  t.name = kImplicitTenantName;
  t.roles = kRoleTenant | kRolePrivileged | kRoleAdmin;
  return t;
}

TenantRegistry::TenantRegistry(std::vector<Tenant> tenants) {
  Replace(std::move(tenants));
}

void TenantRegistry::Replace(std::vector<Tenant> tenants) {
  std::map<std::string, Tenant> by_name;
  std::map<std::string, std::string> by_token_hash, by_cn;
  for (Tenant& t : tenants) {
    for (const std::string& h : t.token_sha256) by_token_hash[h] = t.name;
    for (const std::string& cn : t.cert_common_names) by_cn[cn] = t.name;
    by_name[t.name] = std::move(t);
  }
  absl::MutexLock l(&mu_);
  by_name_.swap(by_name);
  by_token_hash_.swap(by_token_hash);
  by_cn_.swap(by_cn);
}

std::optional<Tenant> TenantRegistry::ByToken(absl::string_view token) const {
  const std::string hash = Sha256Hex(token);
  absl::MutexLock l(&mu_);
  auto it = by_token_hash_.find(hash);
  if (it == by_token_hash_.end()) return std::nullopt;
  return by_name_.at(it->second);
}

std::optional<Tenant> TenantRegistry::ByCommonName(absl::string_view cn) const {
  absl::MutexLock l(&mu_);
  auto it = by_cn_.find(std::string(cn));
  if (it == by_cn_.end()) return std::nullopt;
  return by_name_.at(it->second);
}

std::optional<Tenant> TenantRegistry::ByName(absl::string_view name) const {
  absl::MutexLock l(&mu_);
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) return std::nullopt;
  return it->second;
}

std::vector<Tenant> TenantRegistry::List() const {
  absl::MutexLock l(&mu_);
  std::vector<Tenant> out;
  for (const auto& [name, t] : by_name_) out.push_back(t);
  return out;
}

absl::StatusOr<Tenant> TenantRegistry::SetLimits(absl::string_view name,
                                                 TenantLimits limits) {
  absl::MutexLock l(&mu_);
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) {
    return absl::NotFoundError(absl::StrCat("no tenant \"", name, "\""));
  }
  it->second.limits = limits;
  return it->second;
}

}  // namespace physpool::server
