// SPDX-License-Identifier: Apache-2.0
// SIGHUP: the configuration file read again, its tenants section (tokens,
// roles, limits) applied at once, everything else left for a restart
// (docs/operations.md, "Reloading"). A file that does not parse, or whose
// checks fail, changes nothing: the running configuration stays, the error
// is logged with its file, line and key, and counted.
//
// State: the running configuration (its tenants follow each reload) and
// the reload counters.
// Thread safety: Reload from one thread at a time (main's, on SIGHUP);
// counters() from any (atomics: the metrics scrape).
// I/O: Reload reads the configuration through `load` (the file) and logs;
// applying it takes the pool's lock (PoolManager::LimitsChanged,
// EndStreamsExcept).
// REQUIRES: `registry` and `manager` outlive it; one Reload at a time.
#ifndef PHYSPOOL_SERVER_RELOAD_H_
#define PHYSPOOL_SERVER_RELOAD_H_

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "server/daemon/config.h"
#include "server/lease/tenants.h"
#include "server/pool_manager.h"
#include "server/rpc/metrics.h"

namespace physpool::server {

class ConfigReloader {
 public:
  // `load` reads the configuration as start-up did (file, flags, checks).
  // `running` is what the daemon started with; `registry` and `manager`
  // outlive the reloader.
  using Load = std::function<absl::StatusOr<ServerConfig>()>;
  ConfigReloader(Load load, ServerConfig running, TenantRegistry* registry,
                 PoolManager* manager)
      : load_(std::move(load)),
        running_(std::move(running)),
        registry_(registry),
        manager_(manager) {}

  // Reads and applies, as above: the tenants replaced at once (callers are
  // identified against the old set or the new one); waiters and reclaims
  // over new limits answered; Watch streams of removed tenants ended; the
  // keys that need a restart logged. REQUIRES: one caller at a time.
  void Reload();

  const ReloadCounters& counters() const { return counters_; }

 private:
  const Load load_;
  ServerConfig running_;
  TenantRegistry* const registry_;
  PoolManager* const manager_;
  ReloadCounters counters_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_RELOAD_H_
