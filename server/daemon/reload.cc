// SPDX-License-Identifier: Apache-2.0
#include "server/daemon/reload.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "server/core/log.h"

namespace physpool::server {

void ConfigReloader::Reload() {
  absl::StatusOr<ServerConfig> next = load_();
  if (!next.ok()) {
    ++counters_.failed;
    Log(LogLevel::kError,
        "configuration reload refused: the running configuration stays",
        {F("error", std::string(next.status().message()))});
    return;
  }
  // implicit_tenant is not in the tenants section: it stays as started.
  std::vector<Tenant> tenants = next->tenants;
  if (running_.implicit_tenant) tenants.push_back(ImplicitTenant());
  std::set<std::string> names;
  for (const Tenant& t : tenants) names.insert(t.name);
  registry_->Replace(tenants);
  manager_->LimitsChanged();
  manager_->EndStreamsExcept(
      names, absl::UnauthenticatedError(
                 "this tenant was removed by a configuration reload"));
  const std::vector<std::string> restart =
      ChangedKeysButTenants(running_, *next);
  running_.tenants = next->tenants;
  ++counters_.ok;
  Log(LogLevel::kInfo, "configuration reloaded: tenants applied",
      {F("tenants", next->tenants.size())});
  if (!restart.empty()) {
    Log(LogLevel::kWarn,
        "configuration reload: these keys changed but apply only at a "
        "restart; they keep their running values",
        {F("keys", absl::StrJoin(restart, ","))});
  }
}

}  // namespace physpool::server
