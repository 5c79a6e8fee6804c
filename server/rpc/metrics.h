// SPDX-License-Identifier: Apache-2.0
// Prometheus metrics: one Collectable, registered once at start-up, that
// reads the pool's state at scrape time (no metric is touched on the
// request path). Names per DESIGN.md; they pass `promtool check metrics`.
//
// State: none (the manager and the reload counters it reads).
// Thread safety: thread-safe; the exposer's threads call Collect, which
// takes the pool's lock briefly (PoolManager::Stats) and reads the reload
// counters (atomics).
// I/O: none (the exposer serves the answer).
// REQUIRES: `manager` and `reloads` outlive every Collect: the exposer is
// stopped (or the collector unregistered) before they go.
#ifndef PHYSPOOL_SERVER_METRICS_H_
#define PHYSPOOL_SERVER_METRICS_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/pool_manager.h"

namespace physpool::server {

// physpool_config_reloads_total{result}: counted by the daemon's reloads
// (daemon/reload.h).
struct ReloadCounters {
  std::atomic<uint64_t> ok{0};
  std::atomic<uint64_t> failed{0};
};

class PoolCollector final : public prometheus::Collectable {
 public:
  // `reloads` (may be null) counts SIGHUP reloads.
  explicit PoolCollector(PoolManager* manager,
                         const ReloadCounters* reloads = nullptr)
      : manager_(manager), reloads_(reloads) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  PoolManager* manager_;
  const ReloadCounters* reloads_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_METRICS_H_
