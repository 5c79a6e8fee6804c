// SPDX-License-Identifier: Apache-2.0
// Restart recovery: a store holding 1,000 to 1,000,000 live leases is
// opened and the pool rebuilt from it (LeaseStore::Open + PoolManager::Start),
// as physpoold does after a crash. Target: under 1 s at 100,000.
// BM_LessorRestore: the lessor's part alone (issue 25: <= 2 us a lease at
// 1,000,000, linear from 10,000).
// BM_OpenStore: LeaseStore::Open alone, with each StoreCheck (what the
// fail-closed check of an existing store costs: docs/operations.md).
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "server/core/clock.h"
#include "server/lease/lessor.h"
#include "server/pool_manager.h"
#include "server/store/lease_store.h"
#include "vfio/sim_source.h"

namespace physpool::server {
namespace {

// The i-th lease's id, shaped as the daemon makes them ("l-" and 16 hex
// digits that look random; distinct for distinct i).
std::string LeaseId(int64_t i) {
  return absl::StrFormat("l-%016x",
                         static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL);
}

void BM_RestoreLeases(benchmark::State& state) {
  const int64_t n = state.range(0);
  char tmpl[] = "/tmp/physpool-restore-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    state.SkipWithError("mkdtemp");
    return;
  }
  const std::string dir = tmpl;
  vfio::SimConfig sim;
  sim.dir = dir + "/sim";
  sim.segments = {
      {static_cast<uint64_t>(n) * 2 * 4096, 0, 0}};  // sparse tmpfs file
  const std::string db = dir + "/leases.db";
  {
    vfio::SimSource layout(sim);
    (void)layout.Start(false);  // the backing files a restart re-attaches
    auto store = LeaseStore::Open(db, "boot", layout.Layout());
    const int64_t expires = absl::ToUnixMillis(absl::Now()) + 3600000;
    (void)(*store)->Begin();
    for (int64_t i = 0; i < n; ++i) {  // every other page, one lease each
      const uint64_t pfn = (uint64_t{1} << 20) + 2 * i;
      (void)(*store)->PutLease({LeaseId(i),
                                i % 2 ? "alice" : "bob",
                                {{pglist::Pfn(pfn), pglist::PageCount(1)}},
                                false,
                                expires,
                                3600,
                                "simple",
                                "",
                                "",
                                "",
                                ""});
    }
    (void)(*store)->Commit();
  }
  for (auto _ : state) {
    const absl::Time t0 = absl::Now();
    auto store = LeaseStore::Open(db, "boot", vfio::SimSource(sim).Layout());
    vfio::SimSource source(sim);
    if (!store.ok() || !source.Start(/*keep_contents=*/true).ok()) {
      state.SkipWithError("open");
      break;
    }
    const absl::Time t1 = absl::Now();
    TenantRegistry tenants({});
    SystemClock clock;
    PoolManager manager({}, &source, &clock, &tenants, store->get());
    if (!manager.Start().ok()) {
      state.SkipWithError("start");
      break;
    }
    const absl::Time t2 = absl::Now();
    const double seconds = absl::ToDoubleSeconds(t2 - t0);
    state.SetIterationTime(seconds);
    state.counters["leases"] =
        static_cast<double>(manager.Leases(std::nullopt, "", 1 << 30).size());
    state.counters["restore_ms"] = seconds * 1000;
    // The store's part (LeaseStore::Open: the integrity check and every
    // row read) and the daemon's (PoolManager::Start: the core's claims,
    // the lessor), per lease.
    state.counters["open_us_per_lease"] =
        absl::ToDoubleMicroseconds(t1 - t0) / static_cast<double>(n);
    state.counters["start_us_per_lease"] =
        absl::ToDoubleMicroseconds(t2 - t1) / static_cast<double>(n);
    state.counters["us_per_lease"] = seconds * 1e6 / static_cast<double>(n);
    manager.Shutdown();
  }
  std::system(("rm -rf " + dir).c_str());
}

BENCHMARK(BM_RestoreLeases)
    ->Arg(1000)
    ->Arg(10000)
    ->Arg(100000)
    ->Arg(1000000)
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// The lessor's own part of a restart: Lessor::Restore of `n` live leases
// (random ids as the daemon makes them, one tenant in two, one expiry).
void BM_LessorRestore(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::vector<Lessor::Lease> leases(static_cast<size_t>(n));
  absl::BitGen gen;
  const absl::Time expires = absl::Now() + absl::Hours(1);
  for (int64_t i = 0; i < n; ++i) {
    Lessor::Lease& l = leases[static_cast<size_t>(i)];
    l.alloc = static_cast<pglist::AllocationId>(i + 1);
    l.info.id = absl::StrFormat("l-%016x", absl::Uniform<uint64_t>(gen));
    l.info.tenant = i % 2 ? "alice" : "bob";
    l.info.bytes = 4096;
    l.info.expires = expires;
    l.info.ttl = absl::Hours(1);
  }
  for (auto _ : state) {
    std::vector<Lessor::Lease> copy = leases;
    auto lessor = std::make_unique<Lessor>(absl::Seconds(10), 16384);
    const absl::Time t0 = absl::Now();
    lessor->Restore(std::move(copy));
    const absl::Duration took = absl::Now() - t0;
    state.SetIterationTime(absl::ToDoubleSeconds(took));
    state.counters["us_per_lease"] =
        absl::ToDoubleMicroseconds(took) / static_cast<double>(n);
    benchmark::DoNotOptimize(lessor->size());
  }
}

BENCHMARK(BM_LessorRestore)
    ->Arg(10000)
    ->Arg(100000)
    ->Arg(1000000)
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// A store of `n` leases (one page each) under `dir`; returns its path.
std::string MakeStore(const std::string& dir, int64_t n) {
  const std::string db = dir + "/leases.db";
  auto store = LeaseStore::Open(db, "boot", "layout");
  const int64_t expires = absl::ToUnixMillis(absl::Now()) + 3600000;
  (void)(*store)->Begin();
  for (int64_t i = 0; i < n; ++i) {
    StoredLease l;
    l.id = LeaseId(i);
    l.tenant = i % 2 ? "alice" : "bob";
    l.runs = {{pglist::Pfn((uint64_t{1} << 20) + 2 * i), pglist::PageCount(1)}};
    l.expires_unix_ms = expires;
    l.ttl_seconds = 3600;
    l.path = "simple";
    (void)(*store)->PutLease(l);
  }
  (void)(*store)->Commit();
  return db;
}

// range(0) leases; range(1) the StoreCheck (0 full, 1 quick, 2 none).
void BM_OpenStore(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto check = static_cast<StoreCheck>(state.range(1));
  char tmpl[] = "/tmp/physpool-open-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    state.SkipWithError("mkdtemp");
    return;
  }
  const std::string db = MakeStore(tmpl, n);
  for (auto _ : state) {
    const absl::Time t0 = absl::Now();
    auto store = LeaseStore::Open(db, "boot", "layout", check);
    const double seconds = absl::ToDoubleSeconds(absl::Now() - t0);
    if (!store.ok() || (*store)->leases().size() != static_cast<size_t>(n)) {
      state.SkipWithError("open");
      break;
    }
    state.SetIterationTime(seconds);
    state.counters["open_ms"] = seconds * 1000;
    state.counters["us_per_lease"] = seconds * 1e6 / static_cast<double>(n);
  }
  state.SetLabel(check == StoreCheck::kFull    ? "integrity_check"
                 : check == StoreCheck::kQuick ? "quick_check"
                                               : "no check");
  std::system((std::string("rm -rf ") + tmpl).c_str());
}

BENCHMARK(BM_OpenStore)
    ->ArgsProduct({{10000, 100000, 1000000}, {0, 1, 2}})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace physpool::server
