// Prometheus metrics: one Collectable, registered once at start-up, that
// reads the pool's state at scrape time (no metric is touched on the
// request path). Names per DESIGN.md; they pass `promtool check metrics`.
#ifndef PHYSPOOL_SERVER_METRICS_H_
#define PHYSPOOL_SERVER_METRICS_H_

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/pool_manager.h"
#include "server/reload.h"

namespace physpool::server {

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
