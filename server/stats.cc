// SPDX-License-Identifier: Apache-2.0
// PoolManager::Stats: one snapshot of what the metrics and Admin.GetStats
// report, assembled from each component's figures under the lock; the
// device domains (the memory source's own locks) are read after it.
#include "server/core/histogram.h"
#include "server/lease/parts.h"
#include "server/pool_manager.h"

namespace physpool::server {

ManagerStats PoolManager::Stats() {
  ManagerStats s;
  Locked([&](Turn& t) {
    Parts& p = *parts_;
    s.pool = p.pool.stats();
    s.page_size = page_size_;
    for (const auto& seg : p.pool.Segments())
      s.segments.push_back(p.segments.View(t, seg, p.recycler.scrubbing(t)));
    s.tenants = p.lessor.usage();
    s.waits_started = p.waiting.waits_started();
    s.numa_fallbacks = p.placement.numa_fallbacks();
    const Ender::Counters& ends = p.ender.counters();
    s.lease_expirations = ends.lease_expirations;
    s.revocations = ends.revocations;
    s.reclaimed_bytes = ends.reclaimed_bytes;
    s.scrub_backlog_pages = p.scrubber.backlog_pages();
    s.scrub_failed_pages = p.scrubber.failed_pages();
    s.scrub_errors = p.recycler.errors();
    s.store_errors = p.durable.errors();
    const Committer::Stats c = p.committer.stats();
    s.store_transactions = c.transactions;
    s.store_changes = c.changes;
    s.store_led_transactions = c.led;
    s.store_writable = p.durable.writable();
    s.waiting = static_cast<uint32_t>(p.waiters.size() + p.reclaims.size());
    s.watch_streams = static_cast<uint32_t>(p.events.size());
    s.wait_seconds = p.wait_seconds;
    s.alloc_seconds = p.alloc_seconds.by_path;
    s.per_lease_views = opts_.per_lease_views;
    s.views = static_cast<uint32_t>(p.views.size());
    s.quarantined_leases = p.views.quarantined();
    s.quarantined_bytes = p.views.quarantined_bytes();
    const Quarantine::Figures q = p.quarantine.figures(t);
    s.quarantine_scans = q.scans;
    s.last_scan_seconds = absl::ToDoubleSeconds(q.last_scan);
    s.last_scan_processes = static_cast<uint32_t>(q.last_processes);
    s.last_scan_uninspected = static_cast<uint32_t>(q.last_uninspected);
    s.quarantined_unverified_bytes = p.views.unverified_bytes();
    s.quarantine_blind = q.blind;
    s.dma_map_errors = p.devices.map_errors();
    s.dma_unmap_errors = p.devices.unmap_errors();
    s.dma_stuck_bytes = p.devices.StuckBytes(t);
  });
  s.devices = source_->DeviceDomains();
  return s;
}

std::vector<vfio::DeviceDomain> PoolManager::DeviceDomains() {
  return source_->DeviceDomains();
}

}  // namespace physpool::server
