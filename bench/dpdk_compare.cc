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
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_memzone.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench/churn.h"
#include "pglist/pool.h"

namespace physpool::bench {
namespace {

constexpr uint64_t kPage = 4096;

class PglistTarget : public ChurnTarget {
 public:
  PglistTarget(pglist::Placement placement, uint64_t base, uint64_t bytes)
      : placement_(placement), lo_(base), hi_(base + bytes / kPage * kPage) {
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
  uint64_t Lo() const override { return lo_; }
  uint64_t Hi() const override { return hi_; }
  std::optional<uint64_t> Allocate(const ChurnRequest& r,
                                   uint64_t* handle) override {
    pglist::Request q;
    q.bytes = r.bytes;
    q.alignment = r.alignment;
    q.boundary = r.boundary;
    q.max_segments = 1;
    auto a = pool_->Allocate(q);
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
  uint64_t lo_, hi_;
  std::unique_ptr<pglist::Pool> pool_;
};

class MallocTarget : public ChurnTarget {
 public:
  MallocTarget(uint64_t lo, uint64_t hi) : lo_(lo), hi_(hi) {}
  std::string Name() const override { return "rte_malloc"; }
  uint64_t Lo() const override { return lo_; }
  uint64_t Hi() const override { return hi_; }
  std::optional<uint64_t> Allocate(const ChurnRequest& r,
                                   uint64_t* handle) override {
    uint64_t align = r.EffectiveAlignment();
    if (r.boundary != 0) align = std::max(align, NextPow2(r.bytes));
    void* p = rte_malloc_socket(nullptr, r.bytes, static_cast<unsigned>(align),
                                SOCKET_ID_ANY);
    if (p == nullptr) return std::nullopt;
    *handle = reinterpret_cast<uint64_t>(p);
    return rte_malloc_virt2iova(p);
  }
  void Free(uint64_t handle) override {
    rte_free(reinterpret_cast<void*>(handle));
  }

 private:
  uint64_t lo_, hi_;
};

class MemzoneTarget : public ChurnTarget {
 public:
  MemzoneTarget(uint64_t lo, uint64_t hi) : lo_(lo), hi_(hi) {}
  std::string Name() const override { return "rte_memzone"; }
  uint64_t Lo() const override { return lo_; }
  uint64_t Hi() const override { return hi_; }
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
  uint64_t lo_, hi_;
  uint64_t next_ = 0;
  uint64_t calls_ = 0;
  uint64_t out_of_zones_ = 0;  // RTE_MAX_MEMZONE live zones reached
  uint64_t first_cap_call_ = 0;
};

// The IOVA range of DPDK's memory: the union of its memseg lists.
int RangeOf(const rte_memseg_list* msl, void* arg) {
  auto* r = static_cast<std::pair<uint64_t, uint64_t>*>(arg);
  if (msl->len == 0) return 0;
  const uint64_t lo = reinterpret_cast<uint64_t>(msl->base_va);
  r->first = std::min(r->first, lo);
  r->second = std::max(r->second, lo + msl->len);
  return 0;
}

// Touches the whole heap once (so that no run pays for first-touch page
// faults) and tells whether rte_free leaves the freed bytes zero (checked,
// not assumed): one allocation of the largest free block, filled, freed.
bool WarmUpAndCheckZeroing() {
  rte_malloc_socket_stats st{};
  rte_malloc_get_socket_stats(static_cast<int>(rte_socket_id()), &st);
  const size_t len = st.greatest_free_size / 2 * 2 - 4096;
  auto* p = static_cast<unsigned char*>(rte_malloc(nullptr, len, 4096));
  if (p == nullptr) return false;
  std::memset(p, 0xa5, len);
  rte_free(p);
  // The freed element is merged back into the heap; its bytes stay mapped.
  for (size_t i = 0; i < len; i += 4096) {
    if (p[i] != 0) return false;
  }
  return true;
}

std::string Us(double ns) {
  char b[32];
  std::snprintf(b, sizeof(b), ns < 10000 ? "%.2f" : "%.0f", ns / 1000);
  return b;
}

constexpr unsigned kAll = 7;
constexpr unsigned kPlainAndAligned =
    1u << static_cast<int>(RequestClass::kPlain) |
    1u << static_cast<int>(RequestClass::kAligned);
bool In(unsigned classes, RequestClass c) {
  return classes & (1u << static_cast<int>(c));
}

// Figures of `r` over its steps (and frees of allocations) of `classes`.
struct Fig {
  double a50, a99, a99ok, a999, f50, f99, f999;
  uint64_t steps = 0, failed = 0;
  double FailPct() const { return steps ? 100.0 * failed / steps : 0; }
};
Fig Figures(const ChurnResult& r, unsigned classes) {
  std::vector<double> a, ok, fr;
  Fig f;
  for (size_t i = 0; i < r.alloc_ns.size(); ++i) {
    if (!In(classes, r.step_class[i])) continue;
    a.push_back(r.alloc_ns[i]);
    if (!r.step_failed[i]) ok.push_back(r.alloc_ns[i]);
    ++f.steps;
    f.failed += r.step_failed[i];
  }
  for (size_t i = 0; i < r.free_ns.size(); ++i) {
    if (In(classes, r.free_class[i])) fr.push_back(r.free_ns[i]);
  }
  f.a50 = Quantile(a, 0.5);
  f.a99 = Quantile(a, 0.99);
  f.a999 = Quantile(a, 0.999);
  f.a99ok = Quantile(ok, 0.99);
  f.f50 = Quantile(fr, 0.5);
  f.f99 = Quantile(fr, 0.99);
  f.f999 = Quantile(fr, 0.999);
  return f;
}

void PrintTable(const std::vector<ChurnResult>& rs, size_t ref) {
  std::printf(
      "\nLatency, every step (alloc p99 ok: over the allocations that "
      "succeeded):\n\n| allocator | alloc p50 | alloc p99 | alloc p99 ok | "
      "alloc p99.9 | free p50 | free p99 | free p99.9 |\n"
      "|---|---|---|---|---|---|---|---|\n");
  for (const ChurnResult& r : rs) {
    const Fig f = Figures(r, kAll);
    std::printf(
        "| %s | %s µs | %s µs | %s µs | %s µs | %s µs | %s µs | %s µs |\n",
        r.name.c_str(), Us(f.a50).c_str(), Us(f.a99).c_str(),
        Us(f.a99ok).c_str(), Us(f.a999).c_str(), Us(f.f50).c_str(),
        Us(f.f99).c_str(), Us(f.f999).c_str());
  }
  const ChurnResult& r0 = rs[ref];
  uint64_t n[kNumRequestClasses] = {};
  for (RequestClass c : r0.step_class) ++n[static_cast<int>(c)];
  std::printf(
      "\nFailed, by request class (the steps are the same for all: plain "
      "%" PRIu64 ", aligned %" PRIu64 ", boundary %" PRIu64
      "; rte_malloc is asked the size's power of two as alignment for a "
      "boundary):\n\n| allocator | all | plain | aligned | boundary | "
      "occupancy at end | mean occupancy | allocs, frees | violations |\n"
      "|---|---|---|---|---|---|---|---|---|\n",
      n[0], n[1], n[2]);
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
  std::printf(
      "\nRatios to %s, plain and aligned requests only (boundary requests "
      "left out: %s cannot be asked for a boundary; frees of their "
      "allocations too). Below 1: lower than it.\n\n| allocator | alloc "
      "p50 | alloc p99 | alloc p99 ok | alloc p99.9 | free p50 | free p99 | "
      "free p99.9 | failed |\n|---|---|---|---|---|---|---|---|---|\n",
      r0.name.c_str(), r0.name.c_str());
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  const Fig g = Figures(r0, kPlainAndAligned);
  for (const ChurnResult& r : rs) {
    const Fig f = Figures(r, kPlainAndAligned);
    std::printf(
        "| %s | %.3g× | %.3g× | %.3g× | %.3g× | %.3g× | %.3g× | %.3g× | "
        "%.3g× (%.2f %% / %.2f %%) |\n",
        r.name.c_str(), ratio(f.a50, g.a50), ratio(f.a99, g.a99),
        ratio(f.a99ok, g.a99ok), ratio(f.a999, g.a999), ratio(f.f50, g.f50),
        ratio(f.f99, g.f99), ratio(f.f999, g.f999),
        ratio(f.FailPct(), g.FailPct()), f.FailPct(), g.FailPct());
  }
}

}  // namespace
}  // namespace physpool::bench

int main(int argc, char** argv) {
  using namespace physpool::bench;
  const int eal = rte_eal_init(argc, argv);
  if (eal < 0) {
    std::fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
    return 2;
  }
  // The memzone run reaches RTE_MAX_MEMZONE: counted below, not logged.
  rte_log_set_level(RTE_LOGTYPE_EAL, RTE_LOG_CRIT);
  ChurnOptions o;
  for (int i = eal + 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--steps") == 0) {
      o.steps = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (std::strcmp(argv[i], "--seed") == 0) {
      o.seed = std::strtoull(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  std::pair<uint64_t, uint64_t> range{~uint64_t{0}, 0};
  rte_memseg_list_walk(RangeOf, &range);
  const bool zeroes = WarmUpAndCheckZeroing();
  rte_malloc_socket_stats st{};
  rte_malloc_get_socket_stats(static_cast<int>(rte_socket_id()), &st);
  o.capacity = st.heap_totalsz_bytes / 4096 * 4096;
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
      range.first, range.second, zeroes ? "yes" : "no", o.seed, o.steps,
      100 * o.target, o.capacity);
  std::vector<ChurnResult> results;
  double meta[2] = {0, 0};
  for (physpool::pglist::Placement p :
       {physpool::pglist::Placement::kNextFit,
        physpool::pglist::Placement::kBestFit}) {
    PglistTarget t(p, range.first, o.capacity);
    results.push_back(RunChurn(t, o));
    meta[static_cast<int>(p)] = t.MetadataBitsPerPage();
  }
  MallocTarget m(range.first, range.second);
  results.push_back(RunChurn(m, o));
  MemzoneTarget z(range.first, range.second);
  results.push_back(RunChurn(z, o));
  PrintTable(results, 2);
  // From its first refusal for RTE_MAX_MEMZONE on, the memzone run is stuck
  // below the target (nothing is freed there): every allocator's figures
  // over the steps before it.
  uint64_t cap_step = 0;
  if (z.first_cap_call() > results.back().prefill_calls) {
    cap_step = z.first_cap_call() - results.back().prefill_calls - 1;
    std::vector<ChurnResult> first;
    for (const ChurnResult& r : results)
      first.push_back(FirstSteps(r, cap_step));
    std::printf("\nThe first %" PRIu64
                " steps only (before rte_memzone's first refusal for "
                "RTE_MAX_MEMZONE):\n",
                cap_step);
    PrintTable(first, 2);
  }
  std::printf(
      "\npglist metadata: %.3f bits/page (nextfit), %.3f (bestfit). "
      "rte_memzone: %" PRIu64
      " reservations refused for RTE_MAX_MEMZONE "
      "(%d live zones), the first at step %" PRIu64 ".\n",
      meta[0], meta[1], z.out_of_zones(), RTE_MAX_MEMZONE, cap_step);
  int bad = 0;
  for (const ChurnResult& r : results) {
    if (r.violations != 0) {
      std::fprintf(stderr, "%s: %" PRIu64 " bad answers, first: %s\n",
                   r.name.c_str(), r.violations, r.first_violation.c_str());
      bad = 1;
    }
  }
  rte_eal_cleanup();
  return bad;
}
