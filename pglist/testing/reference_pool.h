// SPDX-License-Identifier: Apache-2.0
// A naive model of the pool's allocation policy for property tests: one
// byte of state per page and page-by-page walks, written without the free
// map, the summaries or any of the real searches' skipping. It must place
// every request exactly where Pool does; disagreement is a bug in one of
// them. Shares only Normalize (request validation) with the real pool.
#ifndef PHYSPOOL_PGLIST_TESTING_REFERENCE_POOL_H_
#define PHYSPOOL_PGLIST_TESTING_REFERENCE_POOL_H_

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "pglist/outcome.h"
#include "pglist/physseg.h"
#include "pglist/pool.h"
#include "pglist/request.h"

namespace physpool::pglist::testing {

class ReferencePool {
 public:
  explicit ReferencePool(const PoolOptions& opts) : opts_(opts) {}

  absl::StatusOr<SegmentId> AddSegment(const SegmentSpec& spec);
  absl::Status DrainSegment(SegmentId id, bool drain);
  absl::Status RemoveSegment(SegmentId id);

  absl::StatusOr<Allocation> Allocate(const Request& req);
  absl::StatusOr<ReclaimPlan> PlanReclaim(const Request& req);
  absl::StatusOr<Allocation> CommitReclaim(const Request& req,
                                           const ReclaimPlan& plan);
  absl::Status Free(AllocationId id);

  // Mirrors a state built elsewhere (for benchmarks): takes exactly `runs`
  // as the next allocation id, and sets a segment's hint.
  // REQUIRES: the runs are free and inside segments.
  AllocationId Claim(const std::vector<PageRun>& runs, bool preemptible);
  void SetHint(SegmentId id, Pfn hint);

  // Each segment's start hint (absolute PFN), by segment id.
  std::map<SegmentId, uint64_t> Hints() const;

  uint64_t free_pages() const;
  uint64_t used_pages() const;
  uint64_t total_pages() const;
  const std::map<AllocationId, Allocation>& allocations() const {
    return allocs_;
  }

 private:
  enum : uint8_t { kFree = 0, kUsed = 1, kPreemptible = 2 };
  struct Seg {
    SegmentId id;
    uint64_t base, pages, avail_begin, avail_end;
    uint32_t freelist;
    bool draining = false;
    uint64_t hint;
    std::vector<uint8_t> state;  // per page of the segment
    uint8_t& at(uint64_t pfn) { return state[pfn - base]; }
  };

  std::vector<Seg*> Order();
  Seg* SegOf(uint64_t pfn);
  std::pair<uint64_t, uint64_t> Clip(const Seg& s, const Constraints& c) const;
  bool AllFree(Seg& s, uint64_t start, uint64_t n);
  void Mark(uint64_t start, uint64_t n, uint8_t state);
  absl::Status Precheck(const Constraints& c);
  // reference_placement.cc: one run in `s`, by the placement; the multi
  // path's slots of `s`; several runs from the freelists up to `list`.
  std::optional<uint64_t> FindSingle(Seg& s, const Constraints& c);
  std::vector<PageRun> Slots(Seg& s, const Constraints& c);
  std::optional<std::vector<PageRun>> ChooseMulti(
      const std::vector<Seg*>& order, uint32_t list, const Constraints& c);
  Allocation Record(std::vector<PageRun> runs, Path path, bool preemptible);

  PoolOptions opts_;
  std::vector<Seg> segs_;
  SegmentId next_seg_ = 0;
  std::map<AllocationId, Allocation> allocs_;
  AllocationId next_id_ = 1;
};

}  // namespace physpool::pglist::testing

#endif  // PHYSPOOL_PGLIST_TESTING_REFERENCE_POOL_H_
