// SPDX-License-Identifier: Apache-2.0
// Issue 16's RPC benchmark: the real physpoold (started through the tests'
// daemon harness: sim source, store on, unix socket) against gRPC's own
// floor measured in the same run: a bare gRPC server with only a health
// service (rpc_floor_server, a process of its own) and physpoold's own
// health service, called by the same client code.
//
// Each workload runs N concurrent clients, each with its own channel (a
// local subchannel pool, so no two clients share a connection), for a
// fixed time:
//   floor      Health.Check on the bare server (synchronous API)
//   floor_cb   the same through gRPC's callback API, which physpoold's
//              services use (a second bare server; not a target, a price)
//   health     Health.Check on physpoold
//   pair       Allocate (64 KiB, one run) + Release; clients alternate
//              between two tenants
//   renew      Allocate + Renew + Release
//   contig     Allocate (64 KiB, 64 KiB aligned, no 1 MiB boundary
//              crossed) + Release
//   wait       Allocate with may_wait (served at once: the flag's path) +
//              Release
// and prints p50/p90/p99/p99.9 per RPC with its ratio to the floor's p50,
// the rates, and the two targets; --json writes all of it, --cdf
// DIR the latency distributions for plot_rpc.gp.
//
// With --prefill N the pool first holds N live 4 KiB leases (of two
// tenants), and --pool-bytes B sizes it (one sim segment, sparse): the
// scaling table of docs/performance.md.
//
//   rpc_benchmark [--seconds S] [--clients 1,8] [--json FILE] [--cdf DIR]
//                 [--prefill N] [--pool-bytes B] [--workloads pair,...]
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

using Clock = std::chrono::steady_clock;
using grpc::health::v1::Health;

struct Stats {
  size_t n = 0;
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0;  // microseconds
  double rate = 0;                             // per second
};

Stats Of(std::vector<double>& us, double seconds) {
  Stats s;
  s.n = us.size();
  if (us.empty()) return s;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    return us[std::min(us.size() - 1, static_cast<size_t>(q * us.size()))];
  };
  s.p50 = at(0.5);
  s.p90 = at(0.9);
  s.p99 = at(0.99);
  s.p999 = at(0.999);
  s.rate = us.size() / seconds;
  return s;
}

std::shared_ptr<grpc::Channel> OwnChannel(const std::string& socket) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("unix:" + socket,
                                   grpc::InsecureChannelCredentials(), args);
}

double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

// One client's loop: `op` runs one unit of the workload, appending each
// RPC's latency under its name; false stops the run with an error.
using Op = std::function<bool(int client,
                              std::map<std::string, std::vector<double>>*)>;

// Runs `clients` threads of `op` for `seconds` (after a short warm-up
// each); the latencies by RPC, merged.
std::map<std::string, std::vector<double>> Run(int clients, double seconds,
                                               const Op& op) {
  std::vector<std::map<std::string, std::vector<double>>> per(clients);
  std::vector<std::thread> threads;
  std::atomic<bool> failed{false};
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::map<std::string, std::vector<double>> warm;
      const auto warm_end = Clock::now() + std::chrono::milliseconds(300);
      while (Clock::now() < warm_end) {
        if (!op(c, &warm)) {
          failed = true;
          return;
        }
      }
      const auto end = Clock::now() + std::chrono::microseconds(
                                          static_cast<int64_t>(seconds * 1e6));
      while (Clock::now() < end && !failed) {
        if (!op(c, &per[c])) failed = true;
      }
    });
  }
  for (auto& t : threads) t.join();
  if (failed) std::exit(1);
  std::map<std::string, std::vector<double>> all;
  for (auto& m : per) {
    for (auto& [k, v] : m) all[k].insert(all[k].end(), v.begin(), v.end());
  }
  return all;
}

bool Fail(const char* what, const grpc::Status& s) {
  std::fprintf(stderr, "%s: %s\n", what, s.error_message().c_str());
  return false;
}

// physpool_alloc_duration_seconds in a scrape of physpoold's metrics,
// summed over the paths that succeeded: cumulative count by bucket bound
// ("le", +Inf as infinity).
std::map<double, double> AllocBuckets(const std::string& metrics) {
  std::map<double, double> out;
  const absl::string_view prefix = "physpool_alloc_duration_seconds_bucket{";
  for (absl::string_view l : absl::StrSplit(metrics, '\n')) {
    if (!absl::StartsWith(l, prefix) || absl::StrContains(l, "path=\"failed\""))
      continue;
    const size_t le = l.find("le=\"");
    const size_t close = l.find('}');
    if (le == l.npos || close == l.npos) continue;
    const std::string bound(l.substr(le + 4, l.find('"', le + 4) - le - 4));
    const double b =
        bound == "+Inf" ? INFINITY : std::strtod(bound.c_str(), nullptr);
    out[b] += std::strtod(std::string(l.substr(close + 1)).c_str(), nullptr);
  }
  return out;
}

// physpoold's store counters (transactions, changes, led transactions).
struct StoreCounters {
  double transactions = 0, changes = 0, led = 0;
};
StoreCounters ReadStoreCounters(int metrics_port) {
  const std::string m = Metrics(metrics_port);
  return {MetricValue(m, "physpool_store_transactions_total"),
          MetricValue(m, "physpool_store_changes_total"),
          MetricValue(m, "physpool_store_led_transactions_total")};
}

// Starts rpc_floor_server on `socket` (callback API if `callback`); its pid
// once it listens, or -1.
pid_t StartFloor(const std::string& socket, bool callback) {
  int ready[2];
  if (pipe(ready) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(ready[1], 1);
    execl(PHYSPOOL_FLOOR_SERVER_PATH, PHYSPOOL_FLOOR_SERVER_PATH, "--unix",
          socket.c_str(), callback ? "--callback" : static_cast<char*>(nullptr),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(ready[1]);
  char buf[16] = {};
  const bool up = read(ready[0], buf, sizeof(buf) - 1) > 0;
  close(ready[0]);
  if (!up) {
    std::fprintf(stderr, "rpc_floor_server did not start\n");
    return -1;
  }
  return pid;
}

int Main(int argc, char** argv) {
  double seconds = 5;
  std::vector<int> client_counts = {1, 8};
  std::string json_path, cdf_dir;
  uint64_t prefill = 0, pool_bytes = 0;
  double occupancy = 0;        // --occupancy: prefill leases sized to fill this
  std::set<std::string> only;  // --workloads: these (and the floor)
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--seconds") {
      seconds = std::atof(v.c_str());
    } else if (a == "--clients") {
      client_counts.clear();
      for (absl::string_view n : absl::StrSplit(v, ',')) {
        int c = 0;
        if (!absl::SimpleAtoi(n, &c) || c < 1) {
          std::fprintf(stderr, "--clients: %s\n", v.c_str());
          return 2;
        }
        client_counts.push_back(c);
      }
    } else if (a == "--json") {
      json_path = v;
    } else if (a == "--cdf") {
      cdf_dir = v;
    } else if (a == "--prefill") {
      prefill = std::strtoull(v.c_str(), nullptr, 0);
    } else if (a == "--pool-bytes") {
      pool_bytes = std::strtoull(v.c_str(), nullptr, 0);
    } else if (a == "--occupancy") {
      occupancy = std::atof(v.c_str());
    } else if (a == "--workloads") {
      for (absl::string_view w : absl::StrSplit(v, ',')) only.emplace(w);
      only.insert("floor");  // every ratio needs it
    } else {
      std::fprintf(stderr,
                   "usage: %s [--seconds S] [--clients 1,8] [--json FILE] "
                   "[--cdf DIR] [--prefill N] [--pool-bytes B] "
                   "[--occupancy F] [--workloads pair,renew,...]\n",
                   argv[0]);
      return 2;
    }
  }
  DaemonOptions o;
  o.default_ttl_seconds = 600;  // the harness's max_ttl_seconds
  if (pool_bytes != 0) {
    o.segments = {
        absl::StrCat("{bytes: ", pool_bytes, ", freelist: 0, numa: 0}")};
  }
  auto started = Daemon::Start(o);
  if (!started.ok()) {
    std::fprintf(stderr, "physpoold: %s\n",
                 started.status().ToString().c_str());
    return 1;
  }
  Daemon& d = **started;
  const std::string floor_socket =
      absl::StrCat("/tmp/physpool-floor-", getpid(), ".sock");
  const std::string floor_cb_socket =
      absl::StrCat("/tmp/physpool-floor-cb-", getpid(), ".sock");
  const pid_t floor_pid = StartFloor(floor_socket, false);
  const pid_t floor_cb_pid = StartFloor(floor_cb_socket, true);
  if (floor_pid < 0 || floor_cb_pid < 0) return 1;
  const unsigned cores = std::thread::hardware_concurrency();
  double prefill_s = 0;
  uint64_t lease_bytes = 4096;
  if (prefill > 0 && occupancy > 0) {
    const uint64_t total = pool_bytes != 0 ? pool_bytes : 24ull << 20;
    lease_bytes = std::max<uint64_t>(
        4096, static_cast<uint64_t>(occupancy * total / prefill) / 4096 * 4096);
  }
  double restore_s = 0;
  if (prefill > 0) {  // 8 threads, each its own channel
    const auto t0 = Clock::now();
    std::vector<std::thread> fill;
    std::atomic<bool> failed{false};
    for (int t = 0; t < 8; ++t) {
      fill.emplace_back([&, t] {
        auto p = v1::Pool::NewStub(OwnChannel(d.socket()));
        v1::AllocateRequest req;
        req.set_bytes(lease_bytes);
        for (uint64_t i = t; i < prefill && !failed; i += 8) {
          v1::AllocateResponse resp;
          auto ctx = Ctx(t % 2 ? kBob : kAlice, 30);
          const grpc::Status s = p->Allocate(ctx.get(), req, &resp);
          if (!s.ok()) failed = !Fail("prefill Allocate", s);
        }
      });
    }
    for (auto& t : fill) t.join();
    if (failed) return 1;
    prefill_s = Us(t0, Clock::now()) / 1e6;
    std::printf("prefilled %llu live leases of %llu bytes in %.1f s\n",
                static_cast<unsigned long long>(prefill),
                static_cast<unsigned long long>(lease_bytes), prefill_s);
    // Restore: kill -9, start again on the same store, until it serves
    // (process start, store open, pool rebuilt, sockets listening).
    d.Kill();
    const auto r0 = Clock::now();
    if (absl::Status s = d.Restart(); !s.ok()) {
      std::fprintf(stderr, "restart: %s\n", s.ToString().c_str());
      return 1;
    }
    restore_s = Us(r0, Clock::now()) / 1e6;
    std::printf("restore after kill -9 with %llu live leases: %.2f s\n",
                static_cast<unsigned long long>(prefill), restore_s);
  }
  const std::map<double, double> buckets_before =
      AllocBuckets(Metrics(d.metrics_port()));
  std::printf(
      "rpc_benchmark: physpoold (sim, store on, unix socket) vs a bare gRPC "
      "health server; %.1f s per workload; cores %u\n",
      seconds, cores);

  const std::string tenants[] = {kAlice, kBob};
  auto allocate = [](v1::Pool::Stub* p, const std::string& token,
                     v1::AllocateRequest req, std::string* id,
                     std::map<std::string, std::vector<double>>* out) {
    v1::AllocateResponse resp;
    auto ctx = Ctx(token);
    const auto t0 = Clock::now();
    const grpc::Status s = p->Allocate(ctx.get(), req, &resp);
    (*out)["allocate"].push_back(Us(t0, Clock::now()));
    if (!s.ok()) return Fail("Allocate", s);
    *id = resp.lease().id();
    return true;
  };
  auto release = [](v1::Pool::Stub* p, const std::string& token,
                    const std::string& id,
                    std::map<std::string, std::vector<double>>* out) {
    v1::ReleaseRequest req;
    req.set_lease_id(id);
    v1::ReleaseResponse resp;
    auto ctx = Ctx(token);
    const auto t0 = Clock::now();
    const grpc::Status s = p->Release(ctx.get(), req, &resp);
    (*out)["release"].push_back(Us(t0, Clock::now()));
    return s.ok() || Fail("Release", s);
  };

  struct Result {
    std::string workload;
    int clients;
    std::map<std::string, Stats> rpcs;
    StoreCounters store;  // physpoold's, during this workload
  };
  std::vector<Result> results;
  std::map<std::string, std::vector<double>> cdf;  // 1 client's, by series
  for (const int clients : client_counts) {
    std::vector<std::unique_ptr<Health::Stub>> floor, floor_cb, health;
    std::vector<std::unique_ptr<v1::Pool::Stub>> pool;
    for (int c = 0; c < clients; ++c) {
      floor.push_back(Health::NewStub(OwnChannel(floor_socket)));
      floor_cb.push_back(Health::NewStub(OwnChannel(floor_cb_socket)));
      health.push_back(Health::NewStub(OwnChannel(d.socket())));
      pool.push_back(v1::Pool::NewStub(OwnChannel(d.socket())));
    }
    auto check = [&](std::vector<std::unique_ptr<Health::Stub>>* stubs,
                     const char* token) -> Op {
      return [stubs, token](int c, auto* out) {
        grpc::health::v1::HealthCheckRequest req;
        grpc::health::v1::HealthCheckResponse resp;
        auto ctx = Ctx(token);
        const auto t0 = Clock::now();
        const grpc::Status s = (*stubs)[c]->Check(ctx.get(), req, &resp);
        (*out)["check"].push_back(Us(t0, Clock::now()));
        return s.ok() || Fail("Check", s);
      };
    };
    v1::AllocateRequest plain;
    plain.set_bytes(64 << 10);
    plain.set_max_segments(1);
    v1::AllocateRequest contig = plain;
    contig.set_alignment(64 << 10);
    contig.set_boundary(1 << 20);
    v1::AllocateRequest waiting = plain;
    waiting.set_may_wait(true);
    auto pair_of = [&](v1::AllocateRequest req) -> Op {
      return [&, req](int c, auto* out) {
        const std::string& token = tenants[c % 2];
        const auto t0 = Clock::now();
        std::string id;
        if (!allocate(pool[c].get(), token, req, &id, out)) return false;
        if (!release(pool[c].get(), token, id, out)) return false;
        (*out)["pair"].push_back(Us(t0, Clock::now()));
        return true;
      };
    };
    Op renew = [&](int c, auto* out) {
      const std::string& token = tenants[c % 2];
      std::string id;
      if (!allocate(pool[c].get(), token, plain, &id, out)) return false;
      v1::RenewRequest req;
      req.set_lease_id(id);
      v1::RenewResponse resp;
      auto ctx = Ctx(token);
      const auto t0 = Clock::now();
      const grpc::Status s = pool[c]->Renew(ctx.get(), req, &resp);
      (*out)["renew"].push_back(Us(t0, Clock::now()));
      if (!s.ok()) return Fail("Renew", s);
      return release(pool[c].get(), token, id, out);
    };
    const std::vector<std::pair<std::string, Op>> workloads = {
        {"floor", check(&floor, "")},
        {"floor_cb", check(&floor_cb, "")},
        {"health", check(&health, kAlice)},
        {"pair", pair_of(plain)},
        {"renew", renew},
        {"contig", pair_of(contig)},
        {"wait", pair_of(waiting)},
    };
    for (const auto& [name, op] : workloads) {
      if (!only.empty() && !only.count(name)) continue;
      const StoreCounters before = ReadStoreCounters(d.metrics_port());
      auto lat = Run(clients, seconds, op);
      const StoreCounters after = ReadStoreCounters(d.metrics_port());
      Result r{name,
               clients,
               {},
               {after.transactions - before.transactions,
                after.changes - before.changes, after.led - before.led}};
      for (auto& [rpc, us] : lat) {
        if (clients == 1 && (name == "floor" || name == "health")) {
          cdf[name] = us;
        } else if (clients == 1 && name == "pair" && rpc != "pair") {
          cdf[rpc] = us;
        }
        r.rpcs[rpc] = Of(us, seconds);
      }
      results.push_back(std::move(r));
    }
  }
  // The allocation core's own time inside the daemon, during the workloads.
  std::map<double, double> buckets = AllocBuckets(Metrics(d.metrics_port()));
  for (auto& [le, n] : buckets)
    n -= buckets_before.count(le) ? buckets_before.at(le) : 0;
  double in_daemon_p99 = -1, within_20us = -1;
  if (!buckets.empty() && buckets.rbegin()->second > 0) {
    const double total = buckets.rbegin()->second;
    for (const auto& [le, n] : buckets) {
      if (le >= 2e-5 && within_20us < 0) within_20us = n / total;
      if (n >= 0.99 * total && in_daemon_p99 < 0) in_daemon_p99 = le;
    }
    std::printf(
        "in-daemon allocation (physpool_alloc_duration_seconds over the "
        "workloads, %.0f allocations, %llu prefilled leases of %llu bytes): "
        "%.2f %% within 20 us; p99 <= %g us (bucket bound; target <= 20 us: "
        "%s)\n",
        total, static_cast<unsigned long long>(prefill),
        static_cast<unsigned long long>(lease_bytes), within_20us * 100,
        in_daemon_p99 * 1e6, in_daemon_p99 <= 2e-5 ? "met" : "NOT met");
  }
  for (pid_t pid : {floor_pid, floor_cb_pid}) {
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
  }
  unlink(floor_socket.c_str());
  unlink(floor_cb_socket.c_str());

  // The table, each p50 against the floor's of the same client count.
  std::string json = absl::StrCat(
      "{\"cores\": ", cores, ", \"seconds\": ", seconds,
      ", \"prefill\": ", prefill, ", \"prefill_seconds\": ", prefill_s,
      ", \"pool_bytes\": ", pool_bytes, ", \"results\": [");
  std::map<int, Stats> floor_of;
  for (const Result& r : results) {
    if (r.workload == "floor") floor_of[r.clients] = r.rpcs.at("check");
  }
  std::printf("%-8s %3s %-9s %9s %9s %9s %9s %9s %10s %9s\n", "workload", "N",
              "rpc", "n", "p50 us", "p90 us", "p99 us", "p99.9 us", "rate/s",
              "p50/floor");
  bool first = true;
  for (const Result& r : results) {
    for (const auto& [rpc, s] : r.rpcs) {
      const double ratio = s.p50 / floor_of[r.clients].p50;
      std::printf("%-8s %3d %-9s %9zu %9.1f %9.1f %9.1f %9.1f %10.0f %8.2fx\n",
                  r.workload.c_str(), r.clients, rpc.c_str(), s.n, s.p50, s.p90,
                  s.p99, s.p999, s.rate, ratio);
      absl::StrAppend(
          &json, first ? "" : ",", "\n  {\"workload\": \"", r.workload,
          "\", \"clients\": ", r.clients, ", \"rpc\": \"", rpc,
          "\", \"n\": ", s.n, ", \"p50_us\": ", s.p50, ", \"p90_us\": ", s.p90,
          ", \"p99_us\": ", s.p99, ", \"p999_us\": ", s.p999,
          ", \"rate_per_s\": ", s.rate, ", \"p50_over_floor\": ", ratio, "}");
      first = false;
    }
  }
  // Group commit: store changes per transaction, and the share of
  // transactions the calling thread applied itself (warm-up included).
  std::printf("\n%-8s %3s %12s %12s %10s %8s\n", "workload", "N",
              "transactions", "changes", "changes/tx", "led");
  for (const Result& r : results) {
    if (r.store.transactions <= 0) continue;
    std::printf("%-8s %3d %12.0f %12.0f %10.2f %7.1f%%\n", r.workload.c_str(),
                r.clients, r.store.transactions, r.store.changes,
                r.store.changes / r.store.transactions,
                100 * r.store.led / r.store.transactions);
  }
  std::printf("\n");
  absl::StrAppend(&json, "\n], \"targets\": [");
  // The targets, in ratios of the same run.
  first = true;
  for (const Result& r : results) {
    if (r.workload != "pair") continue;
    const Stats& f = floor_of[r.clients];
    const Stats& p = r.rpcs.at("pair");
    const double p50_ratio = p.p50 / f.p50;
    const double rate_ratio = p.rate / (f.rate / 2);
    std::printf(
        "target, %d client(s): pair p50 %.1f us = %.2fx the floor's p50 "
        "(target <= 2.5x: %s); pairs/s %.0f = %.2f of half the floor's "
        "rate %.0f/s%s\n",
        r.clients, p.p50, p50_ratio, p50_ratio <= 2.5 ? "met" : "NOT met",
        p.rate, rate_ratio, f.rate / 2,
        r.clients == 8 ? (rate_ratio >= 0.8 ? " (target >= 0.8: met)"
                                            : " (target >= 0.8: NOT met)")
                       : "");
    absl::StrAppend(&json, first ? "" : ",", "\n  {\"clients\": ", r.clients,
                    ", \"pair_p50_over_floor_p50\": ", p50_ratio,
                    ", \"pairs_per_s_over_half_floor_rate\": ", rate_ratio,
                    "}");
    first = false;
  }
  absl::StrAppend(&json, "\n], \"prefill_lease_bytes\": ", lease_bytes,
                  ", \"restore_seconds\": ", restore_s,
                  ", \"in_daemon_alloc_p99_le_s\": ", in_daemon_p99,
                  ", \"in_daemon_alloc_within_20us\": ", within_20us, "}\n");
  if (!json_path.empty()) std::ofstream(json_path) << json;
  if (!cdf_dir.empty()) {
    for (auto& [name, us] : cdf) {
      std::sort(us.begin(), us.end());
      std::ofstream f(cdf_dir + "/" + name + ".cdf");
      const size_t step = std::max<size_t>(1, us.size() / 2000);
      for (size_t i = 0; i < us.size(); i += step)
        f << us[i] << "\t" << double(i + 1) / us.size() << "\n";
    }
  }
  std::printf("cores (std::thread::hardware_concurrency): %u\n", cores);
  return 0;
}

}  // namespace
}  // namespace physpool::testing

int main(int argc, char** argv) { return physpool::testing::Main(argc, argv); }
