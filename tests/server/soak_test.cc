// SPDX-License-Identifier: Apache-2.0
// Soak (make soak, not in make check): 64 concurrent clients allocate,
// renew and release against the real daemon for PHYSPOOL_SOAK_SECONDS (60).
// No answer may be an error other than RESOURCE_EXHAUSTED or
// DEADLINE_EXCEEDED; the daemon's memory must be stable after warm-up
// (RSS reported at start and end); every invariant holds at the end.
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

constexpr uint64_t kTotal = 24 << 20;

uint64_t RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0)
      return std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

TEST(SoakTest, SixtyFourClients) {
  const char* env = std::getenv("PHYSPOOL_SOAK_SECONDS");
  const int seconds = env ? std::atoi(env) : 60;
  auto started = Daemon::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  Daemon& d = **started;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ops{0}, exhausted{0}, deadline{0}, other{0};
  std::mutex mu;
  std::map<std::string, int> unexpected;
  std::vector<std::thread> clients;
  for (int c = 0; c < 64; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937_64 r(c);
      const std::string token = c % 3 == 0 ? kAlice : c % 3 == 1 ? kBob : kRoot;
      auto pool = d.Pool();
      std::vector<std::string> mine;
      while (!stop) {
        grpc::Status s;
        const int op = r() % 10;
        if (op < 5 || mine.empty()) {
          v1::AllocateRequest req;
          req.set_bytes(4096 * (1 + r() % 128));
          if (r() % 3 == 0) {
            req.set_alignment(65536);
            req.set_max_segments(1);
          }
          req.set_may_wait(r() % 4 == 0);
          req.set_preemptible(r() % 4 == 0);
          req.set_may_reclaim(r() % 8 == 0);
          req.set_ttl_seconds(r() % 10 == 0 ? 1 : 30);
          v1::AllocateResponse resp;
          auto ctx = Ctx(token, 0.5);
          s = pool->Allocate(ctx.get(), req, &resp);
          if (s.ok()) mine.push_back(resp.lease().id());
        } else {
          const size_t k = r() % mine.size();
          auto ctx = Ctx(token, 2);
          if (op < 7) {
            v1::RenewRequest req;
            req.set_lease_id(mine[k]);
            v1::RenewResponse resp;
            s = pool->Renew(ctx.get(), req, &resp);
          } else {
            v1::ReleaseRequest req;
            req.set_lease_id(mine[k]);
            v1::ReleaseResponse resp;
            s = pool->Release(ctx.get(), req, &resp);
            mine.erase(mine.begin() + k);
          }
          // An expired, preempted or revoked lease is a normal NOT_FOUND.
          if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
            if (op < 7) mine.erase(mine.begin() + k);
            s = grpc::Status::OK;
          }
        }
        ++ops;
        if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          ++exhausted;
        } else if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
          ++deadline;
        } else if (!s.ok()) {
          ++other;
          std::lock_guard<std::mutex> l(mu);
          ++unexpected[std::to_string(s.error_code()) + " " +
                       s.error_message()];
        }
      }
      for (const std::string& id : mine) {
        v1::ReleaseRequest req;
        req.set_lease_id(id);
        v1::ReleaseResponse resp;
        auto ctx = Ctx(token, 5);
        pool->Release(ctx.get(), req, &resp);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(std::min(5, seconds / 4)));
  const uint64_t rss_start = RssKiB(d.pid());
  const uint64_t ops_start = ops;
  std::this_thread::sleep_for(
      std::chrono::seconds(seconds - std::min(5, seconds / 4)));
  const uint64_t rss_end = RssKiB(d.pid());
  stop = true;
  for (auto& t : clients) t.join();
  std::printf(
      "%llu operations in %d s by 64 clients (%llu after warm-up); "
      "RESOURCE_EXHAUSTED %llu, DEADLINE_EXCEEDED %llu, other errors %llu\n",
      static_cast<unsigned long long>(ops.load()), seconds,
      static_cast<unsigned long long>(ops - ops_start),
      static_cast<unsigned long long>(exhausted.load()),
      static_cast<unsigned long long>(deadline.load()),
      static_cast<unsigned long long>(other.load()));
  std::printf("physpoold RSS: %llu KiB after warm-up, %llu KiB at the end\n",
              static_cast<unsigned long long>(rss_start),
              static_cast<unsigned long long>(rss_end));
  for (const auto& [what, n] : unexpected)
    std::printf("  unexpected: %d x %s\n", n, what.c_str());
  EXPECT_EQ(other, 0u);
  // Leases granted as their caller's deadline ran out were never seen by
  // it (they would expire at their TTL). Every used page must belong to a
  // live lease; after revoking those, all memory must come back.
  auto pool = d.Pool();
  auto admin = d.Admin();
  // Settled: no reclaim in its grace period, nothing being zeroed.
  auto settle = [&] {
    v1::GetPoolInfoResponse info;
    for (int i = 0; i < 300; ++i) {
      v1::GetStatsResponse stats;
      auto ctx = Ctx(kRoot);
      EXPECT_TRUE(admin->GetStats(ctx.get(), {}, &stats).ok());
      info.Clear();
      ctx = Ctx(kRoot);
      EXPECT_TRUE(pool->GetPoolInfo(ctx.get(), {}, &info).ok());
      if (stats.waiting_requests() == 0 && info.scrubbing_bytes() == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return info;
  };
  v1::GetPoolInfoResponse info = settle();
  v1::ListLeasesResponse left;
  auto ctx = Ctx(kRoot);
  ASSERT_TRUE(admin->ListLeases(ctx.get(), {}, &left).ok());
  uint64_t leased = 0;
  for (const auto& l : left.leases()) leased += l.bytes();
  EXPECT_EQ(info.free_bytes() + info.used_bytes() + info.scrubbing_bytes(),
            kTotal);
  EXPECT_EQ(info.used_bytes(), leased) << "used pages that no lease holds";
  if (info.used_bytes() != leased) {  // show where
    std::set<uint64_t> starts;
    for (const auto& l : left.leases()) {
      for (const auto& r : l.runs()) starts.insert(r.iova());
    }
    v1::OccupancyResponse occ;
    ctx = Ctx(kRoot);
    admin->GetOccupancy(ctx.get(), {}, &occ);
    for (const auto& seg : occ.segments()) {
      for (const auto& r : seg.runs()) {
        if (r.state() != v1::OccupancyRun::FREE && !starts.count(r.iova())) {
          std::printf("  unleased %s run at 0x%llx, %llu bytes\n",
                      v1::OccupancyRun::State_Name(r.state()).c_str(),
                      static_cast<unsigned long long>(r.iova()),
                      static_cast<unsigned long long>(r.length()));
        }
      }
    }
  }
  for (const auto& l : left.leases()) {
    v1::RevokeLeaseRequest req;
    req.set_lease_id(l.id());
    v1::RevokeLeaseResponse resp;
    ctx = Ctx(kRoot);
    admin->RevokeLease(ctx.get(), req, &resp);
  }
  std::printf("%d leases were granted as their caller gave up (revoked now)\n",
              left.leases_size());
  info = settle();
  EXPECT_EQ(info.free_bytes(), kTotal) << "memory lost";
  EXPECT_EQ(d.Stop(), 0);
}

}  // namespace
}  // namespace physpool::testing
