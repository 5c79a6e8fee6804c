// SPDX-License-Identifier: Apache-2.0
// The placement half of physpool::Arena: the pglist core run over the runs
// of an arena's leases, each run one segment at its own IOVA, so that a
// buffer's alignment and boundary hold in the device's address space
// exactly as the daemon's do. It maps each placed run back to the CPU
// address the lease's run is mapped at. Not installed.
//
// State: the pglist pool, the mapped runs of each live region (sorted by
// IOVA), per-region used pages, the ids of buffers a region's loss took.
// Thread safety: none (the Arena holds its mutex around every call).
// I/O: none; no threads. Allocates only what the pglist core does (its
// answer's runs, its allocation record).
#ifndef PHYSPOOL_CLIENT_ARENA_CORE_H_
#define PHYSPOOL_CLIENT_ARENA_CORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pglist/pool.h"
#include "physpool/client.h"

namespace physpool::client_internal {

// One run of a lease: where the device sees it and where it is mapped here.
struct MappedRun {
  uint64_t iova = 0;
  uint64_t bytes = 0;  // a multiple of the page size
  char* cpu = nullptr;
};

// A buffer as the core placed it.
struct Placed {
  uint64_t id = 0;
  uint64_t bytes = 0;  // whole pages
  absl::InlinedVector<Buffer::Run, 1> runs;
};

class ArenaCore {
 public:
  // `page_size`: the daemon's (a power of two); `best_fit`: pglist's bounded
  // best fit (fewer failures under churn) rather than next fit (a cheaper
  // search). INVALID_ARGUMENT for a bad page size.
  static absl::StatusOr<ArenaCore> Create(uint64_t page_size, bool best_fit);

  // Adds the runs of one region (one lease) as segments, freelist 0, all
  // free. Returns the region's index (never reused). INVALID_ARGUMENT for a
  // run that is empty, not page aligned or without a CPU address;
  // ALREADY_EXISTS if one overlaps a live region's run (nothing added).
  absl::StatusOr<size_t> AddRegion(const std::vector<MappedRun>& runs);

  // Places a buffer. INVALID_ARGUMENT for a malformed request (bytes 0, an
  // alignment or boundary that is not a power of two, a boundary below the
  // size); RESOURCE_EXHAUSTED when the live regions have no room, with
  // pglist's FailReason (kNoSpace: frees or another region could help;
  // kNeverFits: not even in empty regions like these).
  absl::StatusOr<Placed> Allocate(const BufferOptions& o);

  // Frees buffer `id`. True if it was live; false if it is unknown, freed
  // already or was taken by a region's loss (then it is forgotten).
  bool Free(uint64_t id);

  // Region `index` is gone (its lease revoked, preempted, expired, lost or
  // released): its segments leave the pool; returns the ids of the live
  // buffers that had a run in it (they are dead: Free forgets them,
  // IsLost is true until then). Nothing for a region already gone.
  std::vector<uint64_t> RemoveRegion(size_t index);

  bool IsLost(uint64_t id) const { return lost_.contains(id); }
  // The region holding IOVA `iova` (a live one), or -1.
  int64_t RegionOf(uint64_t iova) const;
  bool RegionLive(size_t index) const;
  uint64_t RegionUsedPages(size_t index) const;
  uint64_t RegionBytes(size_t index) const;

  uint64_t page_size() const { return pool_.page_size(); }
  uint64_t live_bytes() const;  // bytes of live regions
  uint64_t used_bytes() const;  // bytes of live buffers
  size_t live_buffers() const { return pool_.allocations().size(); }
  // The pglist invariants plus the core's own (every live buffer inside one
  // live region's runs). INTERNAL naming the first violation.
  absl::Status Verify() const;

 private:
  struct Region {
    std::vector<MappedRun> runs;
    std::vector<pglist::SegmentId> segments;
    uint64_t bytes = 0;
    uint64_t used_pages = 0;
    bool live = true;
  };
  struct Span {  // one live run, for IOVA -> CPU lookups
    uint64_t iova, end;
    char* cpu;
    size_t region;
  };
  explicit ArenaCore(pglist::Pool pool) : pool_(std::move(pool)) {}
  const Span* Find(uint64_t iova) const;

  pglist::Pool pool_;
  std::vector<Region> regions_;
  std::vector<Span> spans_;  // sorted by iova, live regions only
  absl::flat_hash_set<uint64_t> lost_;
};

}  // namespace physpool::client_internal

#endif  // PHYSPOOL_CLIENT_ARENA_CORE_H_
