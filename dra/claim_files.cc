// SPDX-License-Identifier: Apache-2.0
#include "dra/claim_files.h"

#include <sys/stat.h>

#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "util/file.h"

namespace physpool::dra {

using nlohmann::json;

std::string CdiKind(const DriverOptions& o) { return o.driver_name + "/claim"; }

absl::Status WriteClaimFiles(const DriverOptions& o, const ClaimRecord& r) {
  const std::string dir = absl::StrCat(o.plugin_dir, "/claims/", r.uid);
  if (absl::Status s = MakeDirs(dir, 0755); !s.ok()) return s;
  chmod(dir.c_str(), 0755);
  // Readable by the container's user, whoever it is; the directory is
  // mounted into the claim's containers only.
  if (absl::Status s =
          WriteFileAtomically(dir + "/token", r.token + "\n", 0444);
      !s.ok()) {
    return s;
  }
  std::vector<std::string> leases;
  for (const ClaimResult& x : r.results)
    leases.push_back(absl::StrCat(x.request, "=", x.lease));
  json env = json::array({
      absl::StrCat("PHYSPOOL_ENDPOINT=unix:", o.socket_dir, "/", o.socket_name),
      absl::StrCat("PHYSPOOL_TOKEN_FILE=", o.container_claim_dir, "/token"),
      absl::StrCat("PHYSPOOL_LEASE=",
                   r.results.empty() ? "" : r.results[0].lease),
      absl::StrCat("PHYSPOOL_LEASES=", absl::StrJoin(leases, ",")),
      absl::StrCat("PHYSPOOL_CLAIM=", r.ns, "/", r.name, "/", r.uid),
  });
  // Both mounts read-only: a unix socket is connected to through a
  // read-only mount, and the container can then neither remove nor
  // replace the daemon's sockets, nor its claim's token.
  json spec = {
      {"cdiVersion", "0.6.0"},
      {"kind", CdiKind(o)},
      {"devices",
       json::array(
           {{{"name", r.uid},
             {"containerEdits",
              {{"env", env},
               {"mounts",
                json::array(
                    {{{"hostPath", o.socket_dir},
                      {"containerPath", o.socket_dir},
                      {"options", json::array({"rbind", "ro"})}},
                     {{"hostPath", dir},
                      {"containerPath", o.container_claim_dir},
                      {"options", json::array({"rbind", "ro"})}}})}}}}})}};
  if (absl::Status s = MakeDirs(o.cdi_dir, 0755); !s.ok()) return s;
  // The temporary is "<name>.json.tmp": CDI reads only *.json and *.yaml.
  return WriteFileAtomically(
      absl::StrCat(o.cdi_dir, "/physpool-", r.uid, ".json"),
      spec.dump(2) + "\n", 0644);
}

void RemoveClaimFiles(const DriverOptions& o, const std::string& uid) {
  std::error_code ec;
  std::filesystem::remove(absl::StrCat(o.cdi_dir, "/physpool-", uid, ".json"),
                          ec);
  std::filesystem::remove_all(absl::StrCat(o.plugin_dir, "/claims/", uid), ec);
}

}  // namespace physpool::dra
