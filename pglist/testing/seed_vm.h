// SPDX-License-Identifier: Apache-2.0
// NetBSD's uvm_pglistalloc (sys/uvm/uvm_pglist.c rev 1.89), written again
// for differential tests: its dispatch (simple or contiguous), its freelist
// and physseg loops, uvm_pglistalloc_s_ps and uvm_pglistalloc_c_ps, with the
// C types the seed uses (int page indices, u_int uimax/uimin, paddr_t masks)
// so that its arithmetic behaves as in the kernel. Its own state: physsegs
// in list order with a start hint and one free flag per page. No
// aggressive path (the seed's relies on the pagedaemon) and no waiting:
// the seed as called with waitok = 0, with no pages reserved.
//
// Not thread-safe. Test support only.
#ifndef PHYSPOOL_PGLIST_TESTING_SEED_VM_H_
#define PHYSPOOL_PGLIST_TESTING_SEED_VM_H_

#include <cstdint>
#include <optional>
#include <vector>

namespace physpool::pglist::testing {

using paddr_t = uint64_t;
constexpr int kSeedPageShift = 12;
constexpr paddr_t kSeedPageSize = paddr_t{1} << kSeedPageShift;

// One physseg as the seed keeps it. Page frame numbers are absolute.
struct SeedSeg {
  paddr_t start = 0, end = 0;              // [start, end)
  paddr_t avail_start = 0, avail_end = 0;  // allocatable pages
  int free_list = 0;
  unsigned start_hint = 0;    // relative to avail_start
  std::vector<uint8_t> free;  // per page of [start, end): 1 = free
  bool IsFree(paddr_t pfn) const { return free[pfn - start] != 0; }
};

// What the contiguous search of one segment did.
struct SeedFind {
  std::optional<paddr_t> start;  // the run's first page
  int spurious_rejections = 0;   // candidates rejected for a page before them
  bool read_outside = false;     // it read a page outside the segment
};

// uvm_pglistalloc_c_ps's search over `seg`, without taking the pages or
// moving the hint. Arguments in pages, after the seed's atop();
// `alignment` and `boundary` in pages too.
SeedFind SeedFindRun(const SeedSeg& seg, int num, paddr_t low, paddr_t high,
                     paddr_t alignment, paddr_t boundary);

class SeedVm {
 public:
  // Appends a segment; the seed's loops visit segments in list order
  // within each freelist. Pages outside [avail_start, avail_end) are never
  // free.
  void Plug(SeedSeg seg);

  // uvm_pglistalloc(size, low, high, alignment, boundary, rlist, nsegs, 0)
  // with byte arguments as the kernel's. Returns 0 (pages appended to
  // *rlist in the seed's order), EINVAL or ENOMEM.
  int Alloc(uint64_t size, paddr_t low, paddr_t high, paddr_t alignment,
            paddr_t boundary, int nsegs, std::vector<paddr_t>* rlist);
  // uvm_pglistfree of pages it handed out (or marks pages allocated
  // elsewhere: Take).
  void Free(const std::vector<paddr_t>& pages);
  void Take(const std::vector<paddr_t>& pages);

  std::vector<SeedSeg>& segs() { return segs_; }
  const std::vector<SeedSeg>& segs() const { return segs_; }

 private:
  SeedSeg* Find(paddr_t pfn);
  uint64_t FreePages() const;
  int Contig(int num, paddr_t low, paddr_t high, paddr_t alignment,
             paddr_t boundary, std::vector<paddr_t>* rlist);
  int Simple(int num, paddr_t low, paddr_t high, std::vector<paddr_t>* rlist);
  int ContigPs(SeedSeg& seg, int num, paddr_t low, paddr_t high,
               paddr_t alignment, paddr_t boundary,
               std::vector<paddr_t>* rlist);
  int SimplePs(SeedSeg& seg, int num, paddr_t low, paddr_t high,
               std::vector<paddr_t>* rlist);
  int NumFreelists() const;

  std::vector<SeedSeg> segs_;
};

}  // namespace physpool::pglist::testing

#endif  // PHYSPOOL_PGLIST_TESTING_SEED_VM_H_
