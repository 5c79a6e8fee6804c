// SPDX-License-Identifier: Apache-2.0
// The tenants section of physpoold's configuration (config.h).
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/daemon/config_reader.h"
#include "util/status_macros.h"

namespace physpool::server::config_internal {

absl::Status ParseTenants(const ConfigReader& r, const YAML::Node& ts,
                          ServerConfig* c) {
  // Where each token hash and certificate name was given, to refuse the
  // second (a token must name exactly one tenant).
  std::map<std::string, std::string> token_owner, cn_owner;
  if (!ts.IsSequence()) return r.Error(ts, "tenants", "must be a list");
  std::set<std::string> names;
  for (size_t i = 0; i < ts.size(); ++i) {
    const std::string where = absl::StrCat("tenants[", i, "]");
    RETURN_IF_ERROR(r.Keys(ts[i], where,
                           {"name", "token_sha256", "cert_common_names",
                            "roles", "max_bytes", "max_leases"}));
    Tenant t;
    RETURN_IF_ERROR(r.Get(ts[i], "name", where, &t.name));
    if (t.name.empty()) return r.Error(ts[i], where + ".name", "is required");
    if (t.name.size() > 128) {
      return r.Error(ts[i]["name"], where + ".name",
                     "is longer than 128 bytes");
    }
    if (!names.insert(t.name).second) {
      return r.Error(ts[i]["name"], where + ".name", "duplicate tenant name");
    }
    for (const char* list : {"token_sha256", "cert_common_names", "roles"}) {
      const YAML::Node n = ts[i][list];
      if (!n) continue;
      if (!n.IsSequence())
        return r.Error(n, absl::StrCat(where, ".", list), "must be a list");
      for (const auto& v : n) {
        const std::string s = v.as<std::string>();
        if (std::string(list) == "token_sha256") {
          if (!IsSha256Hex(s)) {
            return r.Error(
                v, where + ".token_sha256",
                "must be 64 lowercase hex digits (sha256sum of the token)");
          }
          auto [it, fresh] = token_owner.emplace(s, t.name);
          if (!fresh) {
            return r.Error(
                v, where + ".token_sha256",
                absl::StrCat("this token hash is also given for "
                             "tenant \"",
                             it->second, "\": a token must name one tenant"));
          }
          t.token_sha256.push_back(s);
        } else if (std::string(list) == "cert_common_names") {
          auto [it, fresh] = cn_owner.emplace(s, t.name);
          if (!fresh) {
            return r.Error(
                v, where + ".cert_common_names",
                absl::StrCat("\"", s, "\" is also given for tenant \"",
                             it->second, "\""));
          }
          t.cert_common_names.push_back(s);
        }
      }
    }
    if (const YAML::Node roles = ts[i]["roles"]) {
      std::vector<std::string> names_list;
      for (const auto& v : roles) names_list.push_back(v.as<std::string>());
      auto parsed = ParseRoles(names_list);
      if (!parsed.ok())
        return r.Error(roles, where + ".roles", parsed.status().message());
      t.roles = *parsed;
    }
    RETURN_IF_ERROR(r.Get(ts[i], "max_bytes", where, &t.limits.max_bytes));
    RETURN_IF_ERROR(r.Get(ts[i], "max_leases", where, &t.limits.max_leases));
    if (t.token_sha256.empty() && t.cert_common_names.empty()) {
      return r.Error(ts[i], where, "needs token_sha256 or cert_common_names");
    }
    c->tenants.push_back(std::move(t));
  }
  return absl::OkStatus();
}

}  // namespace physpool::server::config_internal
