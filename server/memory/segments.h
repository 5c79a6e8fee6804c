// SPDX-License-Identifier: Apache-2.0
// The pool's segments as the daemon keeps them beside the core: each one's
// backing (file or memfd, offset) for the runs tenants and admins see,
// whether it came from the configuration or was added at run time, and the
// hot add and remove of segments (docs/operations.md, "Segments").
//
// State: the backing of each segment, by its first page.
// Thread safety: not thread-safe: the reads and the bookkeeping take the
// Turn that proves the pool's lock. Add and Remove take no turn: they back,
// map and record a segment with no lock held (the coordinator serialises
// them), and take turns of their own through the Coordinator.
// I/O: Add and Remove call the memory source (AddSegment, RemoveSegment)
// and wait for the store (through the Committer), with no lock held;
// nothing under the lock (Restore reads the source's segment list).
// REQUIRES: `pool`, `source`, `committer`, `durable` and `coordinator`
// outlive it. Add and Remove: one at a time, with the pool's lock not held
// and outside a Committer::Scope on this thread (they wait for their own
// store change).
#ifndef PHYSPOOL_SERVER_MEMORY_SEGMENTS_H_
#define PHYSPOOL_SERVER_MEMORY_SEGMENTS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "pglist/pool.h"
#include "server/core/turn.h"
#include "server/core/types.h"
#include "server/store/durable.h"
#include "vfio/memory_source.h"

namespace physpool::server {

struct SegmentView {
  pglist::SegmentInfo info;
  std::string backing_path;
  uint64_t scrubbing_pages = 0;
};

class Segments {
 public:
  // All must outlive it. `pool` is guarded by the pool's lock.
  Segments(pglist::Pool* pool, vfio::MemorySource* source, Committer* committer,
           DurableLog* durable, Coordinator* coordinator)
      : pool_(pool),
        source_(source),
        committer_(committer),
        durable_(durable),
        coordinator_(coordinator) {}

  // At start: the started source's segments into the pool; those at the
  // IOVAs of `added` were added at run time before a restart.
  absl::Status Restore(Turn& t, const std::set<uint64_t>& added);

  // A run as its lease shows it (IOVA, bytes, backing, segment).
  LeaseRun ToLeaseRun(Turn& t, const pglist::PageRun& r) const;
  // An allocation's runs as IOVA ranges.
  std::vector<vfio::MemorySource::ViewRange> RangesOf(
      Turn& t, pglist::AllocationId alloc) const;
  // A segment with its backing and the pages of `scrubbing` in it.
  SegmentView View(
      Turn& t, const pglist::SegmentInfo& s,
      const absl::flat_hash_set<pglist::AllocationId>& scrubbing) const;
  // Drains or undrains; the capacity changed (waiters retried).
  absl::Status SetDraining(Turn& t, uint32_t segment_id, bool drain);

  // Hot add: backed and mapped with no lock held, added drained, recorded,
  // then undrained. UNAVAILABLE if the store did not take it (nothing
  // added). FAILED_PRECONDITION if `accepting` is false (shutting down).
  absl::StatusOr<pglist::SegmentId> Add(uint64_t bytes, uint32_t freelist,
                                        int32_t numa);
  // Hot remove of an empty segment added at run time (a configured one is
  // FAILED_PRECONDITION: the configuration makes it again at the next
  // start). Recorded, then unmapped and unpinned with no lock held.
  absl::Status Remove(uint32_t segment_id);

 private:
  struct Record {
    pglist::SegmentId id;
    std::string path;
    uint64_t file_offset = 0;
    bool added = false;  // by AddSegment (now or before a restart)
  };
  // Waits for a store change's fate (no lock held).
  absl::Status Record(Committer::Change change);

  pglist::Pool* const pool_;
  vfio::MemorySource* const source_;
  Committer* const committer_;
  DurableLog* const durable_;
  Coordinator* const coordinator_;
  std::map<pglist::Pfn, struct Record> backing_;  // by first page
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_MEMORY_SEGMENTS_H_
