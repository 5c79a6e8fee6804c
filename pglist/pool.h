// SPDX-License-Identifier: Apache-2.0
// The pool: physsegs in allocation order, the live allocations, and the
// allocation paths of NetBSD's uvm_pglistalloc (simple, contig, aggressive)
// plus physpool's multi-run path. Pure: no I/O, no clock, no threads.
//
// Thread safety: none; the owner serialises calls (physpoold holds a mutex).
#ifndef PHYSPOOL_PGLIST_POOL_H_
#define PHYSPOOL_PGLIST_POOL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "pglist/outcome.h"
#include "pglist/physseg.h"
#include "pglist/placement.h"
#include "pglist/reclaim.h"
#include "pglist/request.h"
#include "pglist/stats.h"
#include "pglist/units.h"

namespace physpool::pglist {

// Order of segments within one freelist.
enum class Strategy : uint8_t {
  kAddress,   // ascending IOVA
  kBigFirst,  // most available pages first, ties by lower IOVA
};

struct PoolOptions {
  uint64_t page_size = 4096;  // power of two, 4 KiB .. 1 GiB
  Strategy strategy = Strategy::kAddress;
  // Unprivileged allocations must leave at least this many pages free.
  PageCount reserve_pages;
  // Where a single run goes inside a segment (the contig path); segment
  // order and the simple, multi and aggressive paths are the same for all.
  Placement placement = Placement::kNextFit;
};

// A snapshot of one segment, for metrics and listings.
struct SegmentInfo {
  SegmentId id = 0;
  SegmentSpec spec;
  PageRun avail;
  PageCount free_pages;
  PageCount used_pages;
  PageCount largest_free_run;
  Pfn hint;  // where the next search of this segment starts
  bool draining = false;
};

// Usage of a group of segments (a freelist, a NUMA node).
struct Usage {
  PageCount free_pages;
  PageCount used_pages;
  PageCount largest_free_run;  // the largest of its segments'
};

class Pool {
 public:
  // The most pages one segment may have (16 TiB of 4 KiB pages; its free
  // map is then 512 MiB).
  static constexpr uint64_t kMaxSegmentPages = uint64_t{1} << 32;

  // INVALID_ARGUMENT if the page size is not a power of two in range.
  static absl::StatusOr<Pool> Create(const PoolOptions& options);

  Pool(Pool&&) = default;
  Pool& operator=(Pool&&) = default;

  uint64_t page_size() const { return opts_.page_size; }
  const PoolOptions& options() const { return opts_; }
  Iova ToIova(Pfn p) const { return p.value * opts_.page_size; }

  // --- Segments -----------------------------------------------------------
  // Adds a segment; its pages are free. INVALID_ARGUMENT for a base that is
  // not page aligned, zero or too many pages, an IOVA range past 2^64 or a
  // bad available range; ALREADY_EXISTS if it overlaps another segment.
  absl::StatusOr<SegmentId> AddSegment(const SegmentSpec& spec);
  // Drained segments take no new allocations; frees still work. NOT_FOUND
  // for an unknown id. Idempotent.
  absl::Status DrainSegment(SegmentId id);
  absl::Status UndrainSegment(SegmentId id);
  // FAILED_PRECONDITION while any of its pages is allocated.
  absl::Status RemoveSegment(SegmentId id);
  // All segments, in allocation order (freelist, then strategy).
  std::vector<SegmentInfo> Segments() const;
  // Usage summed per freelist and per NUMA node. O(segments).
  std::map<uint32_t, Usage> UsageByFreelist() const;
  std::map<int32_t, Usage> UsageByNuma() const;

  // --- Allocation ---------------------------------------------------------
  // Serves `req` by the simple path, or freelist by freelist by the contig
  // path and (when the request accepts several runs) the multi path from
  // that freelist and those below it (docs/allocator.md). On failure nothing
  // changes but the counters; the status is INVALID_ARGUMENT (malformed) or
  // RESOURCE_EXHAUSTED, with a FailReason (FailReasonOf) that tells whether
  // frees could ever help.
  absl::StatusOr<Allocation> Allocate(const Request& req);

  // The aggressive path, after Allocate failed with kNoSpace: the single
  // run that reclaiming preemptible allocations would free at least cost
  // (total pages of the allocations revoked, then their number, then the
  // lower freelist, then the lower address; see ReclaimWindow). Changes
  // nothing.
  // RESOURCE_EXHAUSTED/kNoReclaim when there is none.
  absl::StatusOr<ReclaimPlan> PlanReclaim(const Request& req);
  // Frees the plan's victims and allocates its window to `req`.
  // FAILED_PRECONDITION (and no change) if the plan no longer holds.
  absl::StatusOr<Allocation> CommitReclaim(const Request& req,
                                           const ReclaimPlan& plan);

  // Allocates exactly `runs` (e.g. leases restored after a restart).
  // INVALID_ARGUMENT if a run is empty, outside one segment's available
  // range, or overlaps another; FAILED_PRECONDITION if a page is in use.
  // With `sync` false the segments' search indexes are brought up to date
  // by the next query rather than now (many claims in a row: a restart).
  absl::StatusOr<Allocation> Claim(absl::Span<const PageRun> runs,
                                   bool preemptible, bool sync = true);

  // Frees a live allocation. NOT_FOUND if `id` is not live (unknown or
  // already freed).
  absl::Status Free(AllocationId id);

  // Makes a live allocation (not) preemptible: memory on its way back (being
  // zeroed) must not be chosen by the aggressive path. NOT_FOUND if not live.
  absl::Status SetPreemptible(AllocationId id, bool preemptible);

  // --- Inspection ---------------------------------------------------------
  const Allocation* Find(AllocationId id) const;
  const absl::flat_hash_map<AllocationId, Allocation>& allocations() const {
    return allocs_;
  }
  const PoolStats& stats() const { return stats_; }
  // The free stretches of `r`, ascending; empty if r is not inside one
  // segment's available range.
  std::vector<PageRun> FreeRunsIn(const PageRun& r) const;
  PageCount total_pages() const;  // available pages of all segments
  PageCount free_pages() const;   // free pages of all segments
  // Free pages of segments that are not draining.
  PageCount allocatable_free_pages() const;
  size_t MetadataBytes() const;  // free maps and summaries

  // Checks every invariant (allocations inside segments and marked used, no
  // two overlapping, used pages == allocated pages per segment, the
  // preemptible index matches). INTERNAL naming the first violation.
  absl::Status Verify() const;

 private:
  explicit Pool(const PoolOptions& opts) : opts_(opts) {}

  PhysSeg* FindSegment(Pfn p) const;
  PhysSeg* SegmentById(SegmentId id) const;
  void Reorder();
  absl::Status CheckCapacity(const Constraints& c) const;
  bool NeverFits(const Constraints& c) const;
  std::optional<std::vector<PageRun>> TrySimple(const Constraints& c);
  // Runs of segments order_[first, second) share one freelist; ascending.
  std::vector<std::pair<size_t, size_t>> Levels() const;
  // One run in order_[begin, end) (one freelist), by the placement.
  std::optional<std::vector<PageRun>> TryContig(const Constraints& c,
                                                size_t begin, size_t end);
  // The slots of order_[0, gathered), largest first (ties: pool order),
  // kept from one freelist's multi search to the next.
  struct MultiSlots {
    std::vector<PageRun> lower;
    size_t gathered = 0;
  };
  // Several runs from order_[0, end), where order_[begin, end) is the
  // freelist being tried (docs/allocator.md, "multi").
  std::optional<std::vector<PageRun>> TryMulti(const Constraints& c,
                                               size_t begin, size_t end,
                                               MultiSlots* slots);
  // Sorts runs by address; with `join`, joins neighbours in one segment.
  std::vector<PageRun> Canonical(std::vector<PageRun> runs, bool join) const;
  Allocation& Record(std::vector<PageRun> runs, Path path, bool preemptible,
                     bool sync = true);
  absl::Status Fail(Path path, absl::StatusCode code, FailReason reason,
                    absl::string_view message);

  PoolOptions opts_;
  std::vector<std::unique_ptr<PhysSeg>> segs_;
  std::vector<PhysSeg*> order_;      // allocation order
  std::map<Pfn, PhysSeg*> by_base_;  // lookup by page
  SegmentId next_segment_id_ = 0;
  absl::flat_hash_map<AllocationId, Allocation> allocs_;
  PreemptMap preempt_;
  AllocationId next_id_ = 1;
  PoolStats stats_;
};

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_POOL_H_
