// SPDX-License-Identifier: Apache-2.0
// Memory on its way back to the pool: once no view of it is left (the
// quarantine), it is zeroed by the scrub thread (with no lock held), the
// end of its zeroing recorded, and only then freed — or, for a reclaim,
// handed to the continuation its caller gave. Memory a device may still
// reach (stuck) or that could not be zeroed stays out of the pool (fail
// closed). The one place that frees memory of ended leases.
//
// State: the allocations being zeroed (shown as "scrubbing"), the
// zeroing errors of a lease's own end.
// Thread safety: not thread-safe; methods take the Turn that proves the
// pool's lock (errors() is read under it), except Work and ZeroNow, which
// run with no lock held and read only the pool's page size.
// I/O: Work (the scrub thread) and ZeroNow (an end's committing thread)
// zero memory through the memory source, with no lock held; the end of
// zeroing (ScrubDone) is written through the DurableLog after the turn.
// Nothing under the lock.
// REQUIRES: `pool`, `source`, `views`, `scrubber`, `devices` and `durable`
// outlive it; Work's and ZeroNow's ranges stay allocated (being zeroed)
// while they run.
#ifndef PHYSPOOL_SERVER_MEMORY_RECYCLE_H_
#define PHYSPOOL_SERVER_MEMORY_RECYCLE_H_

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "pglist/pool.h"
#include "server/core/turn.h"
#include "server/memory/device_map.h"
#include "server/memory/lease_views.h"
#include "server/memory/scrubber.h"
#include "server/store/durable.h"
#include "vfio/memory_source.h"

namespace physpool::server {

class Recycler {
 public:
  Recycler(pglist::Pool* pool, vfio::MemorySource* source, LeaseViews* views,
           Scrubber* scrubber, DeviceMap* devices, DurableLog* durable)
      : pool_(pool),
        source_(source),
        views_(views),
        scrubber_(scrubber),
        devices_(devices),
        durable_(durable) {}

  // Once no view of `allocs` is left, zeroes them, then deletes the store
  // rows `rows` (their memory "to zero") and frees them.
  void ScrubAndFree(Turn& t, std::vector<pglist::AllocationId> allocs,
                    std::vector<int64_t> rows);
  // The same without waiting for views (none is left).
  void ScrubAndFreeNow(Turn& t, std::vector<pglist::AllocationId> allocs,
                       std::vector<int64_t> rows);
  // Deletes `rows` durably, then frees `allocs`.
  void FreeWhenRecorded(Turn& t, std::vector<pglist::AllocationId> allocs,
                        std::vector<int64_t> rows);
  // Zeroes `runs`, then runs `then` in a turn (a reclaim's victims).
  void Zero(Turn& t, std::vector<pglist::PageRun> runs, TurnStep then);

  // The scrub thread: Take (in a turn) -> Work (no lock) -> Apply (turn).
  std::optional<ScrubJob> Take(Turn& t);
  // When to look again if there is no work now (a failed job's retry).
  std::optional<absl::Time> NextRetry(Turn&) const {
    return scrubber_->NextRetry();
  }
  bool HasWork(Turn& t) const;
  // Zeroes the job's runs. REQUIRES: no lock held.
  absl::Status Work(const ScrubJob& job) const;
  // Zeroes [iova, iova + bytes) now (a small lease's end, by the committing
  // thread). REQUIRES: no lock held.
  absl::Status ZeroNow(uint64_t iova, uint64_t bytes) const {
    return source_->Zero(iova, bytes);
  }
  void Apply(Turn& t, ScrubJob job, const absl::Status& zeroed);

  // Allocations being zeroed (or waiting to be).
  void Mark(Turn&, pglist::AllocationId a) { scrubbing_.insert(a); }
  void Unmark(Turn&, pglist::AllocationId a) { scrubbing_.erase(a); }
  const absl::flat_hash_set<pglist::AllocationId>& scrubbing(Turn&) const {
    return scrubbing_;
  }
  bool IsScrubbing(Turn&, pglist::AllocationId a) const {
    return scrubbing_.contains(a);
  }
  // Zeroing inside a lease's end that failed (the scrubber took over).
  void CountInlineZeroError(Turn&) { ++inline_zero_errors_; }
  uint64_t errors() const { return scrubber_->errors() + inline_zero_errors_; }

 private:
  pglist::Pool* const pool_;
  vfio::MemorySource* const source_;
  LeaseViews* const views_;
  Scrubber* const scrubber_;
  DeviceMap* const devices_;
  DurableLog* const durable_;
  absl::flat_hash_set<pglist::AllocationId> scrubbing_;
  uint64_t inline_zero_errors_ = 0;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_MEMORY_RECYCLE_H_
