// SPDX-License-Identifier: Apache-2.0
// Steady-state churn on the allocation core (issue: pglist benchmark).
//
// Pools of 2^18 (1 GiB), 2^24 (64 GiB) and 2^28 (1 TiB) 4 KiB pages in four
// segments, pre-filled to ~85 %, then: free one random allocation, allocate
// one. Sizes are log-uniform from one page to 64 MiB; a third of requests are
// aligned (8 KiB .. 2 MiB, one run), some have a boundary, some a window.
// Each Allocate is timed alone; counters give the median and p99 per path
// (and the p99 of those that succeeded), and the failures per requested
// path, for each placement (nextfit, the default, and bestfit).
// BM_CoreVsModel runs the same operations on the core and on the naive
// reference model from the same state and reports the ratio.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench/figures.h"
#include "benchmark/benchmark.h"
#include "pglist/pool.h"
#include "pglist/testing/reference_pool.h"

namespace physpool::pglist {
namespace {

constexpr uint64_t kPs = 4096;

struct Workload {
  std::mt19937_64 rng{42};
  uint64_t pool_pages;

  Request Next() {
    Request r;
    const double l =
        std::uniform_real_distribution<double>(0, std::log(16384.0))(rng);
    const uint64_t pages = static_cast<uint64_t>(std::exp(l));
    r.bytes = pages * kPs;
    const uint64_t kind = rng() % 30;
    if (kind < 10) {  // a third: aligned, 8 KiB .. 2 MiB, one run
      r.alignment = kPs << (1 + rng() % 9);
      r.max_segments = 1;
    } else if (kind < 13) {  // boundary: the size's power of two times 2..8
      r.boundary = NextPow2(r.bytes) << (1 + rng() % 3);
      r.max_segments = 1;
    } else if (kind < 16) {  // window: the lower half of the pool
      r.low = uint64_t{1} << 32;
      r.high = r.low + pool_pages / 2 * kPs;
    }
    return r;
  }
};

std::vector<SegmentSpec> Layout(uint64_t pool_pages) {
  std::vector<SegmentSpec> segs;
  for (int i = 0; i < 4; ++i) {
    SegmentSpec s;
    // Segments 512 pages apart, at bases with no particular alignment.
    s.iova = (uint64_t{1} << 32) + i * (pool_pages / 4 + 512 + 3) * kPs;
    s.pages = PageCount(pool_pages / 4);
    s.freelist = i / 3;
    segs.push_back(s);
  }
  return segs;
}

// Pre-fills `pool` to ~85 % with the workload's requests; returns live ids.
std::vector<AllocationId> Prefill(Pool& pool, Workload& w) {
  std::vector<AllocationId> live;
  const uint64_t target = pool.total_pages().value * 85 / 100;
  uint64_t used = 0;
  int misses = 0;
  while (used < target && misses < 1000) {
    auto a = pool.Allocate(w.Next());
    if (!a.ok()) {
      ++misses;
      continue;
    }
    used += a->pages().value;
    live.push_back(a->id);
  }
  return live;
}

// Steady state: while the pool is at or above 85 % used, one random live
// allocation to free (taken off `live`), so that failed allocations cannot
// drain the pool; else nothing.
std::optional<AllocationId> PickVictim(const Pool& pool, Workload& w,
                                       std::vector<AllocationId>* live) {
  if (pool.free_pages().value * 100 > pool.total_pages().value * 15) {
    return std::nullopt;
  }
  const size_t k = w.rng() % live->size();
  const AllocationId id = (*live)[k];
  (*live)[k] = live->back();
  live->pop_back();
  return id;
}

struct Samples {
  std::vector<double> ns[kNumPaths];
  std::vector<double> ok_ns[kNumPaths];  // of the requests that succeeded
  std::vector<double> all;
  uint64_t failures = 0;
  uint64_t failures_by[kNumPaths] = {};  // by requested path

  void Add(Path p, double t) {
    ns[static_cast<int>(p)].push_back(t);
    all.push_back(t);
  }
};

template <typename P>
double TimeAllocate(P& pool, const Request& r,
                    absl::StatusOr<Allocation>* out) {
  const auto t0 = std::chrono::steady_clock::now();
  *out = pool.Allocate(r);
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count();
}

Path RequestedPath(const Request& r) {
  return r.alignment > kPs || r.boundary != 0 || r.max_segments == 1
             ? Path::kContig
             : Path::kSimple;
}

void BM_Churn(benchmark::State& state) {
  const uint64_t pool_pages = uint64_t{1} << state.range(0);
  const int64_t ops = state.range(1);
  PoolOptions opts;
  opts.placement = static_cast<Placement>(state.range(2));
  state.SetLabel(std::string(PlacementName(opts.placement)));
  Pool pool = *Pool::Create(opts);
  for (const auto& s : Layout(pool_pages)) (void)pool.AddSegment(s);
  Workload w{std::mt19937_64(42), pool_pages};
  std::vector<AllocationId> live = Prefill(pool, w);
  Samples samples;
  for (auto _ : state) {
    double total = 0;
    for (int64_t i = 0; i < ops; ++i) {
      if (auto id = PickVictim(pool, w, &live)) (void)pool.Free(*id);
      const Request r = w.Next();
      absl::StatusOr<Allocation> a;
      const double t = TimeAllocate(pool, r, &a);
      total += t;
      samples.Add(RequestedPath(r), t);
      if (a.ok()) {
        samples.ok_ns[static_cast<int>(RequestedPath(r))].push_back(t);
        live.push_back(a->id);
      } else {
        ++samples.failures;
        ++samples.failures_by[static_cast<int>(RequestedPath(r))];
      }
    }
    state.SetIterationTime(total * 1e-9);
  }
  for (Path p : {Path::kSimple, Path::kContig}) {
    auto& v = samples.ns[static_cast<int>(p)];
    const std::string name(PathName(p));
    state.counters[name + "_p50_ns"] = bench::Quantile(v, 0.5);
    state.counters[name + "_p99_ns"] = bench::Quantile(v, 0.99);
    state.counters[name + "_ok_p99_ns"] =
        bench::Quantile(samples.ok_ns[static_cast<int>(p)], 0.99);
  }
  state.counters["all_mean_ns"] =
      std::accumulate(samples.all.begin(), samples.all.end(), 0.0) /
      samples.all.size();
  state.counters["fail_pct"] = 100.0 * samples.failures / ops;
  for (Path p : {Path::kSimple, Path::kContig}) {
    const auto& v = samples.ns[static_cast<int>(p)];
    state.counters[std::string(PathName(p)) + "_fail_pct"] =
        v.empty() ? 0
                  : 100.0 * samples.failures_by[static_cast<int>(p)] / v.size();
  }
  state.counters["used_pct"] =
      100.0 * (pool.total_pages().value - pool.free_pages().value) /
      pool.total_pages().value;
  // The window of the windowed requests (segments 0 and 1, freelist 0):
  // how full the placement leaves it.
  uint64_t low_used = 0, low_total = 0;
  for (const SegmentInfo& seg : pool.Segments()) {
    if (seg.spec.iova >= (uint64_t{1} << 32) + pool_pages / 2 * kPs) continue;
    low_used += seg.used_pages.value;
    low_total += seg.avail.pages.value;
  }
  state.counters["window_used_pct"] = 100.0 * low_used / low_total;
  state.counters["meta_bits_per_page"] =
      8.0 * pool.MetadataBytes() / pool.total_pages().value;
  state.counters["multi_fallbacks"] =
      pool.stats().fallback(Path::kContig, Path::kMulti);
}

void BM_CoreVsModel(benchmark::State& state) {
  const uint64_t pool_pages = uint64_t{1} << state.range(0);
  const int64_t ops = state.range(1);
  Pool pool = *Pool::Create({});
  testing::ReferencePool model({});
  for (const auto& s : Layout(pool_pages)) {
    (void)pool.AddSegment(s);
    (void)model.AddSegment(s);
  }
  Workload w{std::mt19937_64(42), pool_pages};
  std::vector<AllocationId> live = Prefill(pool, w);
  // The model starts from the same state: the same allocations under the
  // same ids (pre-fill ids are 1..K: only successes take one) and hints.
  for (AllocationId id = 1; id <= live.size(); ++id) {
    const Allocation* a = pool.Find(id);
    if (a == nullptr || model.Claim(a->runs, a->preemptible) != id) {
      state.SkipWithError("could not mirror the pool into the model");
      return;
    }
  }
  for (const auto& seg : pool.Segments()) model.SetHint(seg.id, seg.hint);
  Samples core, naive;
  uint64_t mismatches = 0;
  for (auto _ : state) {
    double total = 0;
    for (int64_t i = 0; i < ops; ++i) {
      if (auto id = PickVictim(pool, w, &live)) {
        (void)pool.Free(*id);
        (void)model.Free(*id);
      }
      const Request r = w.Next();
      absl::StatusOr<Allocation> a, b;
      const double tc = TimeAllocate(pool, r, &a);
      const double tm = TimeAllocate(model, r, &b);
      total += tc;
      core.Add(RequestedPath(r), tc);
      naive.Add(RequestedPath(r), tm);
      if (a.ok() != b.ok() || (a.ok() && a->runs != b->runs)) ++mismatches;
      if (a.ok()) live.push_back(a->id);
    }
    state.SetIterationTime(total * 1e-9);
  }
  const double core_mean =
      std::accumulate(core.all.begin(), core.all.end(), 0.0) / ops;
  const double model_mean =
      std::accumulate(naive.all.begin(), naive.all.end(), 0.0) / ops;
  state.counters["core_mean_ns"] = core_mean;
  state.counters["model_mean_ns"] = model_mean;
  state.counters["core_p50_ns"] = bench::Quantile(core.all, 0.5);
  state.counters["model_p50_ns"] = bench::Quantile(naive.all, 0.5);
  state.counters["ratio_mean"] = model_mean / core_mean;
  state.counters["mismatches"] = static_cast<double>(mismatches);
}

// Args: log2(pool pages), steady-state operations, placement (0 nextfit,
// 1 bestfit).
BENCHMARK(BM_Churn)
    ->Args({18, 200000, 0})
    ->Args({18, 200000, 1})
    ->Args({24, 200000, 0})
    ->Args({24, 200000, 1})
    ->Args({28, 200000, 0})
    ->Args({28, 200000, 1})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CoreVsModel)
    ->Args({18, 2000})
    ->Args({24, 200})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace physpool::pglist
