// SPDX-License-Identifier: Apache-2.0
// Renew latency against the real physpoold (started through the test
// harness, like the server tests): two client threads renew their own leases
// as fast as they are answered for N seconds
//   (a) with nothing else going on, and
//   (b) while another thread hot-adds a 1 GiB segment (Admin.AddSegment; the
//       sim source backs it with a sparse file) and removes it again, in a
//       loop.
// Prints p50/p99/p99.9 of both, their ratio and the machine's core count.
//
//   renew_hotadd_benchmark [--seconds N] [--threads T] [--segment-bytes B]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

using Clock = std::chrono::steady_clock;

struct Percentiles {
  size_t n = 0;
  double p50 = 0, p99 = 0, p999 = 0, max = 0;  // microseconds
};

Percentiles Of(std::vector<double> us) {
  Percentiles p;
  p.n = us.size();
  if (us.empty()) return p;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    return us[std::min(us.size() - 1, static_cast<size_t>(q * us.size()))];
  };
  p.p50 = at(0.5);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  p.max = us.back();
  return p;
}

void Print(const char* name, const Percentiles& p, double seconds) {
  std::printf(
      "%-34s n=%-7zu (%6.0f/s)  p50=%8.1f us  p99=%8.1f us  p99.9=%8.1f us  "
      "max=%9.1f us\n",
      name, p.n, p.n / seconds, p.p50, p.p99, p.p999, p.max);
}

// `threads` clients renew their own lease for `seconds`; latencies in us.
// Exits on any failed Renew.
std::vector<double> RenewFor(Daemon& d, const std::vector<std::string>& leases,
                             double seconds) {
  std::vector<std::vector<double>> per(leases.size());
  std::vector<std::thread> threads;
  const auto end = Clock::now() + std::chrono::microseconds(
                                      static_cast<int64_t>(seconds * 1e6));
  for (size_t t = 0; t < leases.size(); ++t) {
    threads.emplace_back([&, t] {
      auto pool = d.Pool();
      v1::RenewRequest req;
      req.set_lease_id(leases[t]);
      per[t].reserve(200000);
      while (Clock::now() < end) {
        v1::RenewResponse resp;
        auto ctx = Ctx(kAlice, 30);
        const auto t0 = Clock::now();
        const grpc::Status s = pool->Renew(ctx.get(), req, &resp);
        const auto t1 = Clock::now();
        if (!s.ok()) {
          std::fprintf(stderr, "Renew failed: %s\n", s.error_message().c_str());
          std::exit(1);
        }
        per[t].push_back(
            std::chrono::duration<double, std::micro>(t1 - t0).count());
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<double> all;
  for (auto& v : per) all.insert(all.end(), v.begin(), v.end());
  return all;
}

int Main(int argc, char** argv) {
  double seconds = 5;
  int threads = 2;
  uint64_t segment_bytes = uint64_t{1} << 30;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--segment-bytes" && i + 1 < argc) {
      segment_bytes = std::strtoull(argv[++i], nullptr, 0);
    } else {
      std::fprintf(
          stderr, "usage: %s [--seconds N] [--threads T] [--segment-bytes B]\n",
          argv[0]);
      return 2;
    }
  }
  DaemonOptions o;
  o.default_ttl_seconds = 300;
  auto started = Daemon::Start(o);
  if (!started.ok()) {
    std::fprintf(stderr, "physpoold: %s\n",
                 started.status().ToString().c_str());
    return 1;
  }
  Daemon& d = **started;
  auto pool = d.Pool();
  auto admin = d.Admin();
  std::vector<std::string> leases;
  for (int t = 0; t < threads; ++t) {
    v1::AllocateRequest req;
    req.set_bytes(64 * 1024);
    v1::AllocateResponse resp;
    auto ctx = Ctx(kAlice);
    const grpc::Status s = pool->Allocate(ctx.get(), req, &resp);
    if (!s.ok()) {
      std::fprintf(stderr, "Allocate: %s\n", s.error_message().c_str());
      return 1;
    }
    leases.push_back(resp.lease().id());
  }
  std::printf(
      "renew_hotadd_benchmark: %d renewing threads, %.1f s per phase, "
      "hot-added segment %llu bytes, hardware_concurrency %u\n",
      threads, seconds, static_cast<unsigned long long>(segment_bytes),
      std::thread::hardware_concurrency());

  RenewFor(d, leases, 0.5);  // warm-up: connections, the store's pages
  const Percentiles quiet = Of(RenewFor(d, leases, seconds));

  // (b): the hot add / remove loop runs alongside.
  std::atomic<bool> stop{false};
  std::vector<double> add_us, remove_us;
  std::string hot_error;
  std::thread hot([&] {
    auto a = d.Admin();
    while (!stop) {
      v1::AddSegmentRequest add;
      add.set_bytes(segment_bytes);
      add.set_freelist(1);
      add.set_numa_node(0);
      v1::SegmentResponse seg;
      auto ctx = Ctx(kRoot, 60);
      auto t0 = Clock::now();
      grpc::Status s = a->AddSegment(ctx.get(), add, &seg);
      add_us.push_back(
          std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      if (!s.ok()) {
        hot_error = "AddSegment: " + s.error_message();
        return;
      }
      v1::SegmentRequest remove;
      remove.set_segment_id(seg.segment().id());
      v1::RemoveSegmentResponse removed;
      ctx = Ctx(kRoot, 60);
      t0 = Clock::now();
      s = a->RemoveSegment(ctx.get(), remove, &removed);
      remove_us.push_back(
          std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      if (!s.ok()) {
        hot_error = "RemoveSegment: " + s.error_message();
        return;
      }
    }
  });
  const Percentiles busy = Of(RenewFor(d, leases, seconds));
  stop = true;
  hot.join();
  if (!hot_error.empty()) {
    std::fprintf(stderr, "hot add/remove failed: %s\n", hot_error.c_str());
    return 1;
  }
  const Percentiles after = Of(RenewFor(d, leases, seconds));

  Print("(a) Renew, nothing else", quiet, seconds);
  Print("(b) Renew, 1 GiB hot add/remove", busy, seconds);
  Print("(a') Renew, nothing else, again", after, seconds);
  std::printf("ratio (b)/(a): p50 %.2fx  p99 %.2fx  p99.9 %.2fx  max %.2fx\n",
              busy.p50 / quiet.p50, busy.p99 / quiet.p99,
              busy.p999 / quiet.p999, busy.max / quiet.max);
  const Percentiles adds = Of(add_us), removes = Of(remove_us);
  std::printf(
      "hot add/remove cycles: %zu in %.1f s; AddSegment p50=%.1f us "
      "max=%.1f us; RemoveSegment p50=%.1f us max=%.1f us\n",
      adds.n, seconds, adds.p50, adds.max, removes.p50, removes.max);
  std::printf("cores (std::thread::hardware_concurrency): %u\n",
              std::thread::hardware_concurrency());
  return d.Stop() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace physpool::testing

int main(int argc, char** argv) { return physpool::testing::Main(argc, argv); }
