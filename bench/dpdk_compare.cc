// SPDX-License-Identifier: Apache-2.0
// pglist side by side with DPDK's allocators (make bench-dpdk; issue 24).
//
// One process, one run, one seeded churn workload (bench/churn.h) on:
//   pglist nextfit / bestfit   Pool::Allocate/Free on one segment the size
//                              and at the address of DPDK's heap, 4 KiB
//                              pages, max_segments 1 (one contiguous run)
//   rte_malloc                 rte_malloc_socket / rte_free; a boundary
//                              cannot be asked of it, so a request with one
//                              is aligned to its size's power of two instead
//                              (which implies the boundary, and is harder)
//   rte_memzone                rte_memzone_reserve_bounded / rte_memzone_free
// Every request asks for at least page (4 KiB) alignment, as pglist's pages
// have. Failures are given per request class (plain, aligned, boundary) and
// the ratios to rte_malloc leave the boundary requests out (like with like).
// What the figures contain: pglist's are the core alone (no memory is
// touched; physpoold zeroes freed memory elsewhere). rte_free and
// rte_memzone_free zero the freed element (the heap keeps free memory
// zeroed), so their free times grow with the size. rte_memzone_reserve
// first looks the new name up among all live zones (a linear scan), then
// allocates from the same heap as rte_malloc.
//
// EAL arguments: -l 0 --no-huge --no-pci --no-shconf --no-telemetry
// -m 1536 --iova-mode=va (root). Flags after "--": --steps N, --seed S.
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_log.h>
#include <rte_memzone.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/churn.h"
#include "bench/dpdk_heap.h"
#include "bench/figures.h"
#include "pglist/pool.h"

namespace physpool::bench {
namespace {

constexpr uint64_t kPage = 4096;

class PglistTarget : public ChurnTarget {
 public:
  PglistTarget(pglist::Placement placement, uint64_t base, uint64_t bytes)
      : ChurnTarget(base, base + bytes / kPage * kPage), placement_(placement) {
    pglist::PoolOptions o;
    o.placement = placement;
    pool_ = std::make_unique<pglist::Pool>(*pglist::Pool::Create(o));
    pglist::SegmentSpec s;
    s.iova = base;
    s.pages = pglist::PageCount(bytes / kPage);
    if (!pool_->AddSegment(s).ok()) std::abort();
  }
  std::string Name() const override {
    return "pglist " + std::string(pglist::PlacementName(placement_));
  }
  std::optional<uint64_t> Allocate(const ChurnRequest& r,
                                   uint64_t* handle) override {
    auto a = pool_->Allocate(OneRunRequest<pglist::Request>(r));
    if (!a.ok()) return std::nullopt;
    *handle = a->id;
    return pool_->ToIova(a->runs.front().start);
  }
  void Free(uint64_t handle) override { (void)pool_->Free(handle); }
  double MetadataBitsPerPage() const {
    return 8.0 * pool_->MetadataBytes() / pool_->total_pages().value;
  }

 private:
  pglist::Placement placement_;
  std::unique_ptr<pglist::Pool> pool_;
};

class MemzoneTarget : public ChurnTarget {
 public:
  MemzoneTarget(uint64_t lo, uint64_t hi) : ChurnTarget(lo, hi) {}
  std::string Name() const override { return "rte_memzone"; }
  std::optional<uint64_t> Allocate(const ChurnRequest& r,
                                   uint64_t* handle) override {
    char name[RTE_MEMZONE_NAMESIZE];
    std::snprintf(name, sizeof(name), "z%" PRIu64, next_++);
    const rte_memzone* mz = rte_memzone_reserve_bounded(
        name, r.bytes, SOCKET_ID_ANY, 0,
        static_cast<unsigned>(r.EffectiveAlignment()),
        static_cast<unsigned>(r.boundary));
    ++calls_;
    if (mz == nullptr) {
      if (rte_errno == ENOSPC && out_of_zones_++ == 0) first_cap_call_ = calls_;
      return std::nullopt;
    }
    *handle = reinterpret_cast<uint64_t>(mz);
    return mz->iova;
  }
  void Free(uint64_t handle) override {
    rte_memzone_free(reinterpret_cast<const rte_memzone*>(handle));
  }
  uint64_t out_of_zones() const { return out_of_zones_; }
  // The 1-based Allocate call first refused for RTE_MAX_MEMZONE; 0: none.
  uint64_t first_cap_call() const { return first_cap_call_; }

 private:
  uint64_t next_ = 0;
  uint64_t calls_ = 0;
  uint64_t out_of_zones_ = 0;  // RTE_MAX_MEMZONE live zones reached
  uint64_t first_cap_call_ = 0;
};

// The latency of every step and free.
void PrintLatency(const std::vector<ChurnResult>& rs) {
  const std::string head =
      TableHead({"allocator", "alloc p50", "alloc p99", "alloc p99 ok",
                 "alloc p99.9", "free p50", "free p99", "free p99.9"});
  std::printf(
      "\nLatency, every step (alloc p99 ok: over the allocations that "
      "succeeded):\n\n%s",
      head.c_str());
  for (const ChurnResult& r : rs) {
    const Fig f = Figures(r, kAllClasses);
    std::printf("| %s | %s |\n", r.name.c_str(),
                UsCells({f.alloc.p50, f.alloc.p99, f.alloc_ok.p99, f.alloc.p999,
                         f.free.p50, f.free.p99, f.free.p999})
                    .c_str());
  }
}

// Failures by request class, and occupancy (`r0`: the steps' classes).
void PrintFailures(const std::vector<ChurnResult>& rs, const ChurnResult& r0) {
  uint64_t n[kNumRequestClasses] = {};
  for (RequestClass c : r0.step_class) ++n[static_cast<int>(c)];
  const std::string head = TableHead(
      {"allocator", "all", "plain", "aligned", "boundary", "occupancy at end",
       "mean occupancy", "allocs, frees", "violations"});
  std::printf(
      "\nFailed, by request class (the steps are the same for all: plain "
      "%" PRIu64 ", aligned %" PRIu64 ", boundary %" PRIu64
      "; rte_malloc is asked the size's power of two as alignment for a "
      "boundary):\n\n%s",
      n[0], n[1], n[2], head.c_str());
  for (const ChurnResult& r : rs) {
    std::printf("| %s | %.2f %% |", r.name.c_str(),
                100.0 * r.failures / r.steps);
    for (int c = 0; c < kNumRequestClasses; ++c) {
      std::printf(" %.2f %% |", Figures(r, 1u << c).FailPct());
    }
    std::printf(" %.1f %% | %.1f %% | %zu, %zu | %" PRIu64 " |\n",
                100 * r.occupancy_end, 100 * r.occupancy_mean,
                r.alloc_ns.size(), r.free_ns.size(), r.violations);
  }
}

// Every allocator's figures over `r0`'s, plain and aligned requests only.
void PrintRatios(const std::vector<ChurnResult>& rs, const ChurnResult& r0) {
  const std::string head = TableHead({"allocator", "alloc p50", "alloc p99",
                                      "alloc p99 ok", "alloc p99.9", "free p50",
                                      "free p99", "free p99.9", "failed"});
  std::printf(
      "\nRatios to %s, plain and aligned requests only (boundary requests "
      "left out: %s cannot be asked for a boundary; frees of their "
      "allocations too). Below 1: lower than it.\n\n%s",
      r0.name.c_str(), r0.name.c_str(), head.c_str());
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  const Fig g = Figures(r0, kPlainAndAligned);
  for (const ChurnResult& r : rs) {
    const Fig f = Figures(r, kPlainAndAligned);
    std::printf(
        "| %s | %.3g× | %.3g× | %.3g× | %.3g× | %.3g× | %.3g× | %.3g× | "
        "%.3g× (%.2f %% / %.2f %%) |\n",
        r.name.c_str(), ratio(f.alloc.p50, g.alloc.p50),
        ratio(f.alloc.p99, g.alloc.p99), ratio(f.alloc_ok.p99, g.alloc_ok.p99),
        ratio(f.alloc.p999, g.alloc.p999), ratio(f.free.p50, g.free.p50),
        ratio(f.free.p99, g.free.p99), ratio(f.free.p999, g.free.p999),
        ratio(f.FailPct(), g.FailPct()), f.FailPct(), g.FailPct());
  }
}

// The three tables of `rs`, against rs[ref].
void PrintTable(const std::vector<ChurnResult>& rs, size_t ref) {
  PrintLatency(rs);
  PrintFailures(rs, rs[ref]);
  PrintRatios(rs, rs[ref]);
}

// The flags after the EAL's arguments, from argv[first]: --steps, --seed.
bool ParseFlags(int argc, char** argv, int first, ChurnOptions* o) {
  for (int i = first; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--steps") == 0) {
      o->steps = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (std::strcmp(argv[i], "--seed") == 0) {
      o->seed = std::strtoull(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return false;
    }
  }
  return true;
}

// Warms the heap up, sets the capacity to the heap's size and prints what
// the run is on; returns DPDK's IOVA range.
std::pair<uint64_t, uint64_t> Prepare(ChurnOptions* o) {
  const std::pair<uint64_t, uint64_t> range = DpdkRange();
  const bool zeroes = WarmUpHeap();
  const rte_malloc_socket_stats st = HeapStats();
  o->capacity = st.heap_totalsz_bytes / kPage * kPage;
  std::printf(
      "dpdk_compare: DPDK heap %zu bytes (%zu free, largest free %zu) in "
      "[%#" PRIx64 ", %#" PRIx64
      "); rte_free zeroes freed memory: %s\n"
      "workload: seed %" PRIu64 ", %" PRIu64
      " steps, target %.0f %% of %" PRIu64
      " bytes; sizes 4 KiB-8 MiB log-uniform (whole pages), 1/3 aligned "
      "8 KiB-2 MiB, 1/10 boundary 2-8x the size's power of two, the rest "
      "plain (page aligned)\n",
      st.heap_totalsz_bytes, st.heap_freesz_bytes, st.greatest_free_size,
      range.first, range.second, zeroes ? "yes" : "no", o->seed, o->steps,
      100 * o->target, o->capacity);
  return range;
}

// From its first refusal for RTE_MAX_MEMZONE on, the memzone run (the last
// of `results`) is stuck below the target (nothing is freed there): every
// allocator's figures over the steps before it. Returns that step; 0 if
// there was no refusal.
uint64_t PrintBeforeCap(const std::vector<ChurnResult>& results,
                        const MemzoneTarget& z) {
  if (z.first_cap_call() <= results.back().prefill_calls) return 0;
  const uint64_t cap_step =
      z.first_cap_call() - results.back().prefill_calls - 1;
  std::vector<ChurnResult> first;
  for (const ChurnResult& r : results) first.push_back(FirstSteps(r, cap_step));
  std::printf("\nThe first %" PRIu64
              " steps only (before rte_memzone's first refusal for "
              "RTE_MAX_MEMZONE):\n",
              cap_step);
  PrintTable(first, 2);
  return cap_step;
}

// 0 if every answer of every run was right.
int Verdict(const std::vector<ChurnResult>& results) {
  int bad = 0;
  for (const ChurnResult& r : results) {
    if (r.violations != 0) {
      std::fprintf(stderr, "%s: %" PRIu64 " bad answers, first: %s\n",
                   r.name.c_str(), r.violations, r.first_violation.c_str());
      bad = 1;
    }
  }
  return bad;
}

// The runs, on flags from argv[first]; the EAL is up.
int Run(int argc, char** argv, int first) {
  // The memzone run reaches RTE_MAX_MEMZONE: counted below, not logged.
  rte_log_set_level(RTE_LOGTYPE_EAL, RTE_LOG_CRIT);
  ChurnOptions o;
  if (!ParseFlags(argc, argv, first, &o)) return 2;
  const std::pair<uint64_t, uint64_t> range = Prepare(&o);
  std::vector<ChurnResult> results;
  double meta[2] = {0, 0};
  for (pglist::Placement p :
       {pglist::Placement::kNextFit, pglist::Placement::kBestFit}) {
    PglistTarget t(p, range.first, o.capacity);
    results.push_back(RunChurn(t, o));
    meta[static_cast<int>(p)] = t.MetadataBitsPerPage();
  }
  MallocTarget m(range.first, range.second);
  results.push_back(RunChurn(m, o));
  MemzoneTarget z(range.first, range.second);
  results.push_back(RunChurn(z, o));
  PrintTable(results, 2);
  const uint64_t cap_step = PrintBeforeCap(results, z);
  std::printf(
      "\npglist metadata: %.3f bits/page (nextfit), %.3f (bestfit). "
      "rte_memzone: %" PRIu64
      " reservations refused for RTE_MAX_MEMZONE "
      "(%d live zones), the first at step %" PRIu64 ".\n",
      meta[0], meta[1], z.out_of_zones(), RTE_MAX_MEMZONE, cap_step);
  return Verdict(results);
}

}  // namespace
}  // namespace physpool::bench

int main(int argc, char** argv) {
  const int eal = rte_eal_init(argc, argv);
  if (eal < 0) {
    std::fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
    return 2;
  }
  const int rc = physpool::bench::Run(argc, argv, eal + 1);
  rte_eal_cleanup();
  return rc;
}
