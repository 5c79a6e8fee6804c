// SPDX-License-Identifier: Apache-2.0
#include "pglist/testing/seed_vm.h"

#include <cerrno>
#include <climits>

namespace physpool::pglist::testing {
namespace {

unsigned uimax(unsigned a, unsigned b) { return a > b ? a : b; }
unsigned uimin(unsigned a, unsigned b) { return a < b ? a : b; }
template <typename T>
paddr_t roundup2(T x, paddr_t m) {
  return (static_cast<paddr_t>(x) + (m - 1)) & ~(m - 1);
}
paddr_t atop(paddr_t x) { return x >> kSeedPageShift; }
paddr_t round_page(paddr_t x) { return roundup2(x, kSeedPageSize); }

}  // namespace

SeedFind SeedFindRun(const SeedSeg& seg, int num, paddr_t low, paddr_t high,
                     paddr_t alignment, paddr_t boundary) {
  const paddr_t avail_start = seg.avail_start, avail_end = seg.avail_end;
  const unsigned hint = seg.start_hint;
  SeedFind res;
  if (high <= avail_start || low >= avail_end) return res;
  int candidate =
      static_cast<int>(roundup2(uimax(low, avail_start + hint), alignment));
  int limit = static_cast<int>(uimin(high, avail_end));
  const int pagemask = static_cast<int>(~(boundary - 1));
  int skip = 0;
  bool second_pass = false;
  for (;;) {
    bool ok = true;
    if (candidate + num > limit) {
      if (hint == 0 || second_pass) return res;
      second_pass = true;
      candidate =
          static_cast<int>(roundup2(uimax(low, avail_start), alignment));
      limit = static_cast<int>(uimin(limit, avail_start + hint));
      skip = 0;
      continue;
    }
    if (boundary != 0 &&
        ((candidate ^ (candidate + num - 1)) & pagemask) != 0) {
      candidate = (candidate + num - 1) & pagemask;
      candidate = static_cast<int>(roundup2(candidate, alignment));
      skip = 0;
      continue;
    }
    const int candidateidx = static_cast<int>(candidate - seg.start);
    const int end = candidateidx + num;
    int idx;
    for (idx = end - 1; idx >= candidateidx + skip; idx--) {
      if (idx < 0 || static_cast<size_t>(idx) >= seg.free.size()) {
        res.read_outside = true;
        return res;
      }
      if (seg.free[idx] == 0) {
        ok = false;
        break;
      }
    }
    if (ok) {
      res.start = static_cast<paddr_t>(candidate);
      return res;
    }
    if (idx < candidateidx) ++res.spurious_rejections;
    int cnt = idx + 1 - candidateidx;
    cnt = static_cast<int>(roundup2(cnt, alignment));
    skip = static_cast<int>(uimax(num - cnt, 0));
    candidate += cnt;
  }
}

void SeedVm::Plug(SeedSeg seg) {
  seg.free.assign(seg.end - seg.start, 0);
  for (paddr_t p = seg.avail_start; p < seg.avail_end; ++p)
    seg.free[p - seg.start] = 1;
  segs_.push_back(std::move(seg));
}

SeedSeg* SeedVm::Find(paddr_t pfn) {
  for (SeedSeg& s : segs_) {
    if (s.start <= pfn && pfn < s.end) return &s;
  }
  return nullptr;
}

uint64_t SeedVm::FreePages() const {
  uint64_t n = 0;
  for (const SeedSeg& s : segs_) {
    for (uint8_t f : s.free) n += f;
  }
  return n;
}

int SeedVm::NumFreelists() const {
  int n = 0;
  for (const SeedSeg& s : segs_) n = s.free_list + 1 > n ? s.free_list + 1 : n;
  return n;
}

void SeedVm::Free(const std::vector<paddr_t>& pages) {
  for (paddr_t p : pages) {
    SeedSeg* s = Find(p);
    s->free[p - s->start] = 1;
  }
}

void SeedVm::Take(const std::vector<paddr_t>& pages) {
  for (paddr_t p : pages) {
    SeedSeg* s = Find(p);
    s->free[p - s->start] = 0;
  }
}

int SeedVm::Alloc(uint64_t size, paddr_t low, paddr_t high, paddr_t alignment,
                  paddr_t boundary, int nsegs, std::vector<paddr_t>* rlist) {
  if (alignment < kSeedPageSize) alignment = kSeedPageSize;
  if (boundary != 0 && boundary < size) return EINVAL;
  const int num = static_cast<int>(atop(round_page(size)));
  low = roundup2(low, alignment);
  rlist->clear();
  if (nsegs < num || alignment != kSeedPageSize || boundary != 0)
    return Contig(num, low, high, alignment, boundary, rlist);
  return Simple(num, low, high, rlist);
}

int SeedVm::Contig(int num, paddr_t low, paddr_t high, paddr_t alignment,
                   paddr_t boundary, std::vector<paddr_t>* rlist) {
  // No reserve: "are there even any free pages?"
  if (FreePages() == 0) return ENOMEM;
  for (int fl = 0; fl < NumFreelists(); ++fl) {
    for (SeedSeg& s : segs_) {
      if (s.free_list != fl) continue;
      num -= ContigPs(s, num, low, high, alignment, boundary, rlist);
      if (num == 0) return 0;
    }
  }
  return ENOMEM;
}

int SeedVm::ContigPs(SeedSeg& seg, int num, paddr_t low, paddr_t high,
                     paddr_t alignment, paddr_t boundary,
                     std::vector<paddr_t>* rlist) {
  const SeedFind f = SeedFindRun(seg, num, atop(low), atop(high),
                                 atop(alignment), boundary >> kSeedPageShift);
  if (!f.start) return 0;
  for (paddr_t p = *f.start; p < *f.start + num; ++p) {
    seg.free[p - seg.start] = 0;
    rlist->push_back(p);
  }
  seg.start_hint = static_cast<unsigned>(*f.start + num - seg.avail_start);
  return num;
}

int SeedVm::Simple(int num, paddr_t low, paddr_t high,
                   std::vector<paddr_t>* rlist) {
  if (FreePages() != 0) {
    for (int fl = 0; fl < NumFreelists(); ++fl) {
      for (SeedSeg& s : segs_) {
        if (s.free_list != fl) continue;
        num -= SimplePs(s, num, low, high, rlist);
        if (num == 0) return 0;
      }
    }
  }
  // waitok == 0: give the pages back; the hints stay where they moved.
  Free(*rlist);
  rlist->clear();
  return ENOMEM;
}

int SeedVm::SimplePs(SeedSeg& seg, int num, paddr_t low, paddr_t high,
                     std::vector<paddr_t>* rlist) {
  low = atop(low);
  high = atop(high);
  if (high <= seg.avail_start || low >= seg.avail_end) return 0;
  int todo = num;
  int candidate =
      static_cast<int>(uimax(low, seg.avail_start + seg.start_hint));
  int limit = static_cast<int>(uimin(high, seg.avail_end));
  bool second_pass = false;
  for (;;) {
    if (candidate >= limit) {
      if (seg.start_hint == 0 || second_pass) {
        candidate = limit - 1;
        break;
      }
      second_pass = true;
      candidate = static_cast<int>(uimax(low, seg.avail_start));
      limit = static_cast<int>(uimin(limit, seg.avail_start + seg.start_hint));
      continue;
    }
    if (seg.free[candidate - seg.start] != 0) {
      seg.free[candidate - seg.start] = 0;
      rlist->push_back(static_cast<paddr_t>(candidate));
      if (--todo == 0) break;
    }
    ++candidate;
  }
  seg.start_hint = static_cast<unsigned>(candidate + 1 - seg.avail_start);
  return num - todo;
}

}  // namespace physpool::pglist::testing
