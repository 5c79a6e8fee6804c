// SPDX-License-Identifier: Apache-2.0
// One physseg: an IOVA-contiguous segment of pool pages with its free map,
// its next-fit start hint and its drain state. The searches here are per
// segment; the Pool decides which segments to try and in what order.
#ifndef PHYSPOOL_PGLIST_PHYSSEG_H_
#define PHYSPOOL_PGLIST_PHYSSEG_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "pglist/free_map.h"
#include "pglist/request.h"
#include "pglist/units.h"

namespace physpool::pglist {

using SegmentId = uint32_t;

// What a segment is made of, as its memory source declares it.
struct SegmentSpec {
  Iova iova = 0;          // a multiple of the pool's page size
  PageCount pages;        // > 0
  uint32_t freelist = 0;  // priority class: lists are tried 0, 1, 2, ...
  int32_t numa = 0;
  // Pages [avail_begin, avail_end) of the segment may be allocated; the rest
  // never is. avail_end 0 means the whole segment.
  uint64_t avail_begin = 0;
  uint64_t avail_end = 0;
};

class PhysSeg {
 public:
  // REQUIRES: the spec was validated (see Pool::AddSegment).
  PhysSeg(SegmentId id, const SegmentSpec& spec, uint64_t page_size);

  SegmentId id() const { return id_; }
  const SegmentSpec& spec() const { return spec_; }
  Pfn base() const { return base_; }
  Pfn end() const { return base_ + PageCount(map_.size()); }
  // The allocatable pages as one run of absolute PFNs.
  PageRun avail() const { return {avail_begin_, avail_end_ - avail_begin_}; }
  PageCount free_pages() const { return PageCount(map_.free_count()); }
  PageCount used_pages() const { return avail().pages - free_pages(); }
  bool draining() const { return draining_; }
  void set_draining(bool d) { draining_ = d; }
  Pfn hint() const { return hint_; }
  void set_hint(Pfn h) { hint_ = h; }

  // May take new allocations for `c`: not draining, on c's NUMA node.
  bool Eligible(const Constraints& c) const {
    return !draining_ && (c.numa < 0 || c.numa == spec_.numa);
  }

  // The pages of `c`'s window inside this segment's available range, as
  // [lo, hi) absolute PFNs; lo >= hi when they do not meet.
  std::pair<uint64_t, uint64_t> Clip(const Constraints& c) const;

  // The contiguous search, next-fit (Placement::kNextFit): the first start
  // that admits a free run of c.pages at or after the hint, else (wrapping
  // once) the first one from the window's start, in address order, whose
  // run may end anywhere up to the window's end. Complete: finds a start
  // whenever this segment holds a feasible free run. Where the seed's
  // uvm_pglistalloc_c_ps finds a run in this segment, this is the same one
  // (its wrap pass only tries runs that end by the hint, and those start
  // below every run that straddles it) as long as the segment's page
  // numbers and the window's are below 2^32: above, the seed's u_int
  // arithmetic truncates them and its answer is none or a page outside the
  // segment (SeedTest.TruncatesPageNumbersAbove32Bits). Changes nothing.
  std::optional<Pfn> FindRun(const Constraints& c) const;
  // The contiguous search, best fit (Placement::kBestFit, whose comment
  // gives the bounds): the maximal free stretches of the window of at least
  // c.pages pages, in address order; of those that admit the request, the
  // shortest (ties: the lower); its first admissible start. Complete.
  // Changes nothing.
  std::optional<Pfn> FindBestFit(const Constraints& c) const;

  // The simple path in this segment, as the seed's uvm_pglistalloc_s_ps:
  // takes up to `want` free pages of the window next-fit (from the hint to
  // the window's end, then, unless the hint is at the segment's start, from
  // the window's start to the hint), appends them as runs. The hint moves
  // past the last page taken; if the segment runs out before `want`, it is
  // left where the last pass stopped (ExhaustHint). Returns the pages taken.
  PageCount TakeNextFit(const Constraints& c, PageCount want,
                        std::vector<PageRun>* out);
  // Moves the hint where TakeNextFit leaves it when the window holds fewer
  // free pages than wanted: for a request that fails before the walk, so
  // that hints move as the seed's would. O(1).
  void ExhaustHint(const Constraints& c);

  // Calls f(PageRun slot) for every maximal free stretch of the window,
  // cut at boundary multiples, each starting at its first aligned page, in
  // address order. Changes nothing.
  template <typename F>
  void ForEachSlot(const Constraints& c, F f) const;

  // REQUIRES: IsFree(r).
  void Take(const PageRun& r);
  // Frees `r`. FAILED_PRECONDITION (and no change) if any page of r is
  // outside the available range or already free.
  absl::Status Release(const PageRun& r);

  bool Holds(const PageRun& r) const {
    return avail().start <= r.start && r.end() <= avail().end() &&
           r.pages.value > 0;
  }
  bool IsFree(const PageRun& r) const {
    return map_.AllFree(Off(r.start), Off(r.end()));
  }
  bool IsUsed(const PageRun& r) const {
    return map_.AllUsed(Off(r.start), Off(r.end()));
  }
  const FreeMap& map() const { return map_; }
  // Offset of an absolute PFN within the segment.
  uint64_t Off(Pfn p) const { return p.value - base_.value; }

  // Longest free run in pages.
  PageCount LargestFreeRun() const { return PageCount(map_.LargestFreeRun()); }
  // Brings the free map's search index up to date (see FreeMap::Sync).
  void Sync() { map_.Sync(); }

 private:
  // The first admissible free start in [from, cand_limit) whose run ends at
  // or before hi. `from` and the result are absolute PFNs.
  std::optional<Pfn> Scan(const Constraints& c, uint64_t from,
                          uint64_t cand_limit, uint64_t hi) const;
  void Gather(uint64_t from, uint64_t to, PageCount want, PageCount* taken,
              std::vector<PageRun>* out);

  const SegmentId id_;
  const SegmentSpec spec_;
  const Pfn base_;
  const Pfn avail_begin_;
  const Pfn avail_end_;
  FreeMap map_;  // pages outside the available range stay marked used
  Pfn hint_;
  bool draining_ = false;
};

template <typename F>
void PhysSeg::ForEachSlot(const Constraints& c, F f) const {
  const auto [lo, hi] = Clip(c);
  uint64_t pos = lo;
  while (pos < hi) {
    const uint64_t a = base_.value + map_.NextFree(Off(Pfn(pos)), Off(Pfn(hi)));
    if (a >= hi) return;
    const uint64_t b = base_.value + map_.NextUsed(Off(Pfn(a)), Off(Pfn(hi)));
    for (uint64_t s = c.AlignUp(a); s < b;) {
      const uint64_t cell_end = c.boundary != 0 ? c.NextCell(s) : b;
      const uint64_t e = std::min(b, cell_end);
      f(PageRun{Pfn(s), PageCount(e - s)});
      if (c.boundary == 0) break;
      s = c.AlignUp(cell_end);
    }
    pos = b;
  }
}

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_PHYSSEG_H_
