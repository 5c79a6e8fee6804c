// SPDX-License-Identifier: Apache-2.0
// Device domains as the pool sees them (docs/vfio.md, "Device domains"): a
// tenant's devices reach its leases and nothing else. Leases are mapped at
// grant (by the committing thread, with no lock held), unmapped before an
// end answers and before zeroing; an allocation whose unmap failed is
// *stuck*: never zeroed or freed by this daemon (a restart reconciles the
// domains), and counted.
//
// State: the stuck allocations, map and unmap error counts.
// Thread safety: not thread-safe; the methods that take a Turn need the
// pool's lock, and the counts are read under it. HasDevices, Map and
// UnmapNow touch none of its state: they only call the memory source
// (thread-safe).
// I/O: the memory source's device domains. Map and UnmapNow run with no
// lock held (a grant's or an end's Prepare step, on the committing
// thread). Under the lock, the named exceptions listed in pool_manager.h:
// Unmap (the pages must be unreachable before they are zeroed: an
// expiry's or a preemption's end, a dropped grant, an end whose unmap
// before its commit failed), MapAgain (a lease whose end failed to record
// is live again), and Reconcile at start (nothing else runs yet).
// REQUIRES: `pool`, `source` and `segments` outlive it.
#ifndef PHYSPOOL_SERVER_MEMORY_DEVICE_MAP_H_
#define PHYSPOOL_SERVER_MEMORY_DEVICE_MAP_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "pglist/pool.h"
#include "server/core/turn.h"
#include "server/memory/segments.h"
#include "vfio/memory_source.h"

namespace physpool::server {

class DeviceMap {
 public:
  DeviceMap(pglist::Pool* pool, vfio::MemorySource* source, Segments* segments)
      : pool_(pool), source_(source), segments_(segments) {}

  // Whether `tenant` has devices of its own (its leases are mapped).
  bool HasDevices(const std::string& tenant) const {
    return source_->HasDevices(tenant);
  }
  // Maps a lease's runs into its tenant's domains (the grant's step, by the
  // committing thread with no lock held: the source is thread-safe).
  absl::Status Map(const std::string& tenant,
                   const std::vector<vfio::MemorySource::ViewRange>& runs) {
    return source_->MapLease(tenant, runs);
  }
  // The same undone (an end's step, with no lock held).
  absl::Status UnmapNow(
      const std::string& tenant,
      const std::vector<vfio::MemorySource::ViewRange>& runs) {
    return source_->UnmapLease(tenant, runs);
  }
  // After this no device of `tenant` reaches `alloc`'s pages; if the unmap
  // fails the allocation is stuck (logged, counted).
  void Unmap(Turn& t, const std::string& tenant, pglist::AllocationId alloc);
  // A lease whose end was not recorded is live again: its devices get it
  // back (a failure is logged and counted).
  void MapAgain(Turn& t, const std::string& tenant, pglist::AllocationId alloc,
                const std::string& lease_id);
  bool IsStuck(Turn&, pglist::AllocationId alloc) const {
    return stuck_.count(alloc) > 0;
  }
  // A grant whose map failed.
  void CountMapError(Turn&) { ++map_errors_; }
  // At start: the tenant domains map exactly `live`.
  absl::Status Reconcile(
      Turn& t, const std::vector<vfio::MemorySource::LiveLease>& live);

  uint64_t map_errors() const { return map_errors_; }
  uint64_t unmap_errors() const { return unmap_errors_; }
  uint64_t StuckBytes(Turn&) const;

 private:
  pglist::Pool* const pool_;
  vfio::MemorySource* const source_;
  Segments* const segments_;
  std::set<pglist::AllocationId> stuck_;
  uint64_t map_errors_ = 0;
  uint64_t unmap_errors_ = 0;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_MEMORY_DEVICE_MAP_H_
