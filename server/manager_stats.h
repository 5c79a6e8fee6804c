// SPDX-License-Identifier: Apache-2.0
// What the metrics and Admin.GetStats report: one snapshot of the pool,
// its leases, its zeroing, its store, its quarantine and its devices
// (PoolManager::Stats assembles it, stats.cc).
//
// State: none (a value type: a snapshot). Thread safety: a value; no
// shared state. I/O: none. REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_MANAGER_STATS_H_
#define PHYSPOOL_SERVER_MANAGER_STATS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "pglist/stats.h"
#include "server/core/histogram.h"
#include "server/core/types.h"
#include "server/memory/segments.h"
#include "vfio/memory_source.h"

namespace physpool::server {

// A snapshot of everything the metrics and GetStats report.
struct ManagerStats {
  pglist::PoolStats pool;
  uint64_t page_size = 0;
  std::vector<SegmentView> segments;
  std::map<std::string, TenantUsage> tenants;
  uint64_t waits_started = 0;  // any -> wait fallbacks
  // Grants served off their preferred NUMA node, by preferred node.
  std::map<int32_t, uint64_t> numa_fallbacks;
  uint64_t lease_expirations = 0;
  std::map<std::string, uint64_t> revocations;  // by reason
  uint64_t reclaimed_bytes = 0;
  uint64_t scrub_backlog_pages = 0;
  uint64_t scrub_failed_pages = 0;  // zeroing failed, held out of the pool
  uint64_t scrub_errors = 0;
  uint64_t store_errors = 0;  // failed store writes
  // Store transactions, the changes they carried (changes / transactions
  // is the group-commit factor) and those applied by the calling thread.
  uint64_t store_transactions = 0;
  uint64_t store_changes = 0;
  uint64_t store_led_transactions = 0;
  bool store_writable = true;
  uint32_t waiting = 0;  // waiters and reclaims in progress
  uint32_t watch_streams = 0;
  // Per-lease views and the quarantine (lease_views.h).
  bool per_lease_views = false;
  uint32_t views = 0;  // live and quarantined
  uint32_t quarantined_leases = 0;
  uint64_t quarantined_bytes = 0;
  uint64_t quarantine_scans = 0;
  double last_scan_seconds = 0;
  uint32_t last_scan_processes = 0;
  // Processes the last scan could not inspect (each may hold any view).
  uint32_t last_scan_uninspected = 0;
  // Quarantined bytes held only by what the daemon cannot name or inspect.
  uint64_t quarantined_unverified_bytes = 0;
  bool quarantine_blind = false;  // the scan cannot see every process
  Histogram wait_seconds;         // finished waits
  std::map<std::string, Histogram> alloc_seconds;  // by path
  // Device domains (docs/vfio.md, "Device domains").
  std::vector<vfio::DeviceDomain> devices;
  uint64_t dma_map_errors = 0;    // grants refused: their map failed
  uint64_t dma_unmap_errors = 0;  // ends whose unmap failed
  uint64_t dma_stuck_bytes = 0;   // held out of the pool: still mapped
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_MANAGER_STATS_H_
