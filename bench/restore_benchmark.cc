// Restart recovery: a store holding 1,000 to 1,000,000 live leases is
// opened and the pool rebuilt from it (LeaseStore::Open + PoolManager::Start),
// as physpoold does after a crash. Target: under 1 s at 100,000.
// BM_OpenStore: LeaseStore::Open alone, with each StoreCheck (what the
// fail-closed check of an existing store costs: docs/operations.md).
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "server/core/clock.h"
#include "server/store/lease_store.h"
#include "server/pool_manager.h"
#include "vfio/sim_source.h"

namespace physpool::server {
namespace {

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
      (void)(*store)->PutLease({"l-" + std::to_string(i),
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
    TenantRegistry tenants({});
    SystemClock clock;
    PoolManager manager({}, &source, &clock, &tenants, store->get());
    if (!manager.Start().ok()) {
      state.SkipWithError("start");
      break;
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - t0);
    state.SetIterationTime(seconds);
    state.counters["leases"] =
        static_cast<double>(manager.Leases(std::nullopt, "", 1 << 30).size());
    state.counters["restore_ms"] = seconds * 1000;
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

// A store of `n` leases (one page each) under `dir`; returns its path.
std::string MakeStore(const std::string& dir, int64_t n) {
  const std::string db = dir + "/leases.db";
  auto store = LeaseStore::Open(db, "boot", "layout");
  const int64_t expires = absl::ToUnixMillis(absl::Now()) + 3600000;
  (void)(*store)->Begin();
  for (int64_t i = 0; i < n; ++i) {
    StoredLease l;
    l.id = "l-" + std::to_string(i);
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
