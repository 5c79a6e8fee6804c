// SPDX-License-Identifier: Apache-2.0
// Durability: physpoold killed with SIGKILL at random moments under a load
// of concurrent clients, restarted each time; every answered, unreleased
// lease must come back with the same runs, and no page may be shared or lost.
// Also: data survives a restart, a host reboot voids leases, a damaged or
// foreign store is refused.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

using ::testing::HasSubstr;
constexpr uint64_t kTotal = 24 << 20;

struct Known {
  std::vector<std::pair<uint64_t, uint64_t>> runs;  // iova, length
  int64_t expires_ms = 0;
  std::string token;
};

std::vector<std::pair<uint64_t, uint64_t>> RunsOf(const v1::Lease& l) {
  std::vector<std::pair<uint64_t, uint64_t>> r;
  for (const auto& run : l.runs()) r.push_back({run.iova(), run.length()});
  return r;
}

// The daemon's view: all live leases, and pool totals once zeroing is done.
struct View {
  std::map<std::string, v1::Lease> leases;
  v1::GetPoolInfoResponse info;
};

View Look(Daemon& d) {
  // Short leases expire while we look: retry until the lease list is the
  // same before and after reading the totals, with nothing being zeroed.
  auto list = [&] {
    std::map<std::string, v1::Lease> leases;
    auto admin = d.Admin();
    for (const auto& l : AllLeases(admin.get(), kRoot)) leases[l.id()] = l;
    return leases;
  };
  View v;
  auto pool = d.Pool();
  for (int i = 0; i < 500; ++i) {
    v.leases = list();
    v.info.Clear();
    auto ctx = Ctx(kRoot);
    EXPECT_TRUE(pool->GetPoolInfo(ctx.get(), {}, &v.info).ok());
    const auto after = list();
    if (v.info.scrubbing_bytes() == 0 && after.size() == v.leases.size() &&
        std::equal(
            after.begin(), after.end(), v.leases.begin(),
            [](const auto& a, const auto& b) { return a.first == b.first; })) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return v;
}

// Total bytes of the pool's segments (hot adds change it).
uint64_t PoolBytes(const v1::GetPoolInfoResponse& info) {
  uint64_t n = 0;
  for (const auto& s : info.segments()) n += s.bytes();
  return n;
}

TEST(CrashTest, LeasesSurviveKill9UnderLoad) {
  DaemonOptions o;
  o.reclaim_grace_ms = 50;
  o.starvation_ms = 100;
  auto started = Daemon::Start(o);
  ASSERT_TRUE(started.ok()) << started.status();
  Daemon& d = **started;
  std::mutex mu;
  std::map<std::string, Known> known;  // answered, not released
  std::set<std::string> uncertain;     // a Release was in flight at the kill
  std::set<std::string> preemptible;   // may be reclaimed by the load itself
  std::mt19937_64 rng(7);
  int kills = 0, checked = 0, extras = 0, expired = 0, retried_same = 0,
      reclaimed = 0, waited = 0, added = 0, removed = 0;
  uint64_t request_seq = 0;
  // Requests whose answer did not arrive (the daemon died, or the deadline
  // ran out): retried with their request id after the restart.
  std::vector<std::pair<std::string, v1::AllocateRequest>> unanswered;
  int recovered = 0;
  for (int round = 0; round < 20; ++round) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < 4; ++c) {
      clients.emplace_back([&, c] {
        std::mt19937_64 r(round * 10 + c);
        const std::string token = c % 2 ? kAlice : kBob;
        auto pool = d.Pool();
        while (!stop) {
          const int op = r() % 10;
          if (op < 5) {
            v1::AllocateRequest req;
            req.set_bytes(4096 * (1 + r() % 64));
            if (r() % 3 == 0) {
              req.set_alignment(65536);
              req.set_max_segments(1);
            }
            const int kind = r() % 8;
            if (kind == 0) req.set_preemptible(true);
            if (kind == 1) {  // reclaim: take others' preemptible leases
              req.set_bytes(4096 * (64 + r() % 192));
              req.set_max_segments(1);
              req.set_may_reclaim(true);
            }
            if (kind == 2) req.set_may_wait(true);
            req.set_ttl_seconds(r() % 8 == 0 ? 1 : 300);  // some expire
            {
              std::lock_guard<std::mutex> l(mu);
              req.set_request_id(absl::StrCat("crash-", ++request_seq));
            }
            // A client retries with the same request id, as the library does.
            for (int attempt = 0; attempt < 2; ++attempt) {
              v1::AllocateResponse resp;
              auto ctx = Ctx(token, kind == 2 ? 0.3 : 2);
              const grpc::Status s = pool->Allocate(ctx.get(), req, &resp);
              if (s.ok()) {
                std::lock_guard<std::mutex> l(mu);
                known[resp.lease().id()] = {RunsOf(resp.lease()),
                                            resp.lease().expires_unix_ms(),
                                            token};
                if (req.preemptible()) preemptible.insert(resp.lease().id());
                retried_same += attempt;
                reclaimed += resp.lease().path() == "aggressive";
                waited += kind == 2;
                break;
              }
              if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
                  s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED)
                break;
              if (attempt == 1) {
                std::lock_guard<std::mutex> l(mu);
                unanswered.push_back({token, req});
              }
            }
          } else {
            std::string id;
            {
              std::lock_guard<std::mutex> l(mu);
              for (const auto& [k, v] : known) {
                if (v.token == token && !uncertain.count(k) && r() % 4 == 0) {
                  id = k;
                  break;
                }
              }
              if (!id.empty() && op >= 8) uncertain.insert(id);
            }
            if (id.empty()) continue;
            auto ctx = Ctx(token, 2);
            if (op < 8) {  // renew
              v1::RenewRequest req;
              req.set_lease_id(id);
              v1::RenewResponse resp;
              if (pool->Renew(ctx.get(), req, &resp).ok()) {
                std::lock_guard<std::mutex> l(mu);
                // Another thread may have released it since.
                auto it = known.find(id);
                if (it != known.end())
                  it->second.expires_ms = resp.lease().expires_unix_ms();
              }
            } else {  // release
              v1::ReleaseRequest req;
              req.set_lease_id(id);
              v1::ReleaseResponse resp;
              const bool ok = pool->Release(ctx.get(), req, &resp).ok();
              std::lock_guard<std::mutex> l(mu);
              if (ok) {
                known.erase(id);
                uncertain.erase(id);
              }
            }
          }
        }
      });
    }
    // An operator adds a segment, lets the tenants use it, then takes it
    // away the way an operator does: drain, revoke what is still in it,
    // remove. A revoked lease is gone by design, so it is marked uncertain
    // before the revoke (the kill may come at any point of this).
    clients.emplace_back([&] {
      auto admin = d.Admin();
      while (!stop) {
        v1::AddSegmentRequest add;
        add.set_bytes(1 << 20);
        v1::SegmentResponse seg;
        auto ctx = Ctx(kRoot, 2);
        if (!admin->AddSegment(ctx.get(), add, &seg).ok()) continue;
        {
          std::lock_guard<std::mutex> l(mu);
          ++added;
        }
        const uint32_t id = seg.segment().id();
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        v1::SegmentRequest one;
        one.set_segment_id(id);
        v1::SegmentResponse drained;
        auto dctx = Ctx(kRoot, 2);
        if (!admin->DrainSegment(dctx.get(), one, &drained).ok()) continue;
        std::vector<std::string> inside;
        v1::AdminListLeasesRequest lr;
        lr.set_page_size(1000);
        bool listed = true;
        do {
          v1::ListLeasesResponse page;
          auto lctx = Ctx(kRoot, 2);
          if (!admin->ListLeases(lctx.get(), lr, &page).ok()) {
            listed = false;
            break;
          }
          for (const auto& l : page.leases()) {
            for (const auto& run : l.runs()) {
              if (run.segment_id() == id) {
                inside.push_back(l.id());
                break;
              }
            }
          }
          lr.set_page_token(page.next_page_token());
        } while (!lr.page_token().empty());
        if (!listed) continue;
        for (const auto& lease : inside) {
          {
            std::lock_guard<std::mutex> l(mu);
            uncertain.insert(lease);
          }
          v1::RevokeLeaseRequest rv;
          rv.set_lease_id(lease);
          rv.set_reason("segment removal");
          v1::RevokeLeaseResponse revoked;
          auto vctx = Ctx(kRoot, 2);
          (void)admin->RevokeLease(vctx.get(), rv, &revoked);
        }
        // Revoked pages are zeroed before they count as free: retry a while.
        for (int attempt = 0; attempt < 50 && !stop; ++attempt) {
          v1::RemoveSegmentResponse gone;
          auto rctx = Ctx(kRoot, 2);
          const grpc::Status s = admin->RemoveSegment(rctx.get(), one, &gone);
          if (s.ok()) {
            std::lock_guard<std::mutex> l(mu);
            ++removed;
            break;
          }
          if (s.error_code() != grpc::StatusCode::FAILED_PRECONDITION) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 300));
    d.Kill();
    ++kills;
    stop = true;
    for (auto& t : clients) t.join();
    ASSERT_TRUE(d.Restart().ok()) << d.Log();
    // The clients retry what got no answer, with the same request ids: a
    // lease granted before the kill comes back to them.
    {
      auto pool = d.Pool();
      for (auto& [token, req] : unanswered) {
        req.set_may_wait(false);
        v1::AllocateResponse resp;
        auto ctx = Ctx(token, 5);
        if (pool->Allocate(ctx.get(), req, &resp).ok()) {
          known[resp.lease().id()] = {RunsOf(resp.lease()),
                                      resp.lease().expires_unix_ms(), token};
          if (req.preemptible()) preemptible.insert(resp.lease().id());
          ++recovered;
        }
      }
      unanswered.clear();
    }
    const View v = Look(d);
    // Every answered, unreleased, unexpired lease is back with its runs,
    // but for preemptible ones another request may have reclaimed.
    const int64_t now = absl::ToUnixMillis(absl::Now());
    for (auto it = known.begin(); it != known.end();) {
      auto live = v.leases.find(it->first);
      if (live == v.leases.end()) {
        const bool may_be_gone = uncertain.count(it->first) ||
                                 preemptible.count(it->first) ||
                                 it->second.expires_ms <= now + 500;
        EXPECT_TRUE(may_be_gone)
            << "lease " << it->first << " lost in round " << round;
        expired += may_be_gone;
        uncertain.erase(it->first);
        it = known.erase(it);
        continue;
      }
      EXPECT_EQ(RunsOf(live->second), it->second.runs) << it->first;
      ++checked;
      ++it;
    }
    // No page in two leases; every used page belongs to a lease.
    std::vector<std::pair<uint64_t, uint64_t>> all;
    uint64_t leased = 0;
    for (const auto& [id, l] : v.leases) {
      // Granted with the answer lost, and its request never retried: none,
      // since every request has an id and every unanswered one is retried.
      EXPECT_TRUE(known.count(id))
          << "lease " << id << " (request " << l.request_id()
          << ") is held for nobody in round " << round;
      extras += !known.count(id);
      for (const auto& r : RunsOf(l)) all.push_back(r);
      leased += l.bytes();
    }
    std::sort(all.begin(), all.end());
    for (size_t i = 1; i < all.size(); ++i) {
      EXPECT_LE(all[i - 1].first + all[i - 1].second, all[i].first)
          << "overlap in round " << round;
    }
    EXPECT_EQ(
        v.info.free_bytes() + v.info.used_bytes() + v.info.scrubbing_bytes(),
        PoolBytes(v.info));
    EXPECT_EQ(v.info.used_bytes(), leased) << "round " << round;
  }
  std::printf(
      "%d kills; %d lease checks passed; %d leases expired, preempted or "
      "released in flight; %d held for nobody; %d answers came from a "
      "request-id retry, %d after the restart; %d reclaims, %d waits served; "
      "%d segments added, %d removed\n",
      kills, checked, expired, extras, retried_same, recovered, reclaimed,
      waited, added, removed);
  EXPECT_EQ(kills, 20);
  EXPECT_GT(checked, 100);
  EXPECT_GT(reclaimed, 0);
  EXPECT_GT(waited, 0);
  EXPECT_GT(added, 0);
  EXPECT_GT(removed, 0);
}

TEST(RestartTest, DataAndLeasesSurviveARestartButNotAReboot) {
  char tmpl[] = "/tmp/physpool-boot-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string boot = std::string(tmpl) + "/boot_id";
  std::ofstream(boot) << "11111111-1111-1111-1111-111111111111\n";
  DaemonOptions o;
  o.boot_id_file = boot;
  auto started = Daemon::Start(o);
  ASSERT_TRUE(started.ok()) << started.status();
  Daemon& d = **started;
  auto pool = d.Pool();
  v1::AllocateRequest req;
  req.set_bytes(1 << 20);
  v1::AllocateResponse held;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->Allocate(ctx.get(), req, &held).ok());
  const v1::Run& run = held.lease().runs(0);
  // Through the lease's view, asked of whichever daemon runs now.
  auto write_read = [&](bool write) {
    auto view = MapView(d, held.lease().id(), kAlice);
    if (!view.ok()) {
      ADD_FAILURE() << view.status() << "\n" << d.Log();
      return false;
    }
    uint8_t* p = (*view)->base + run.view_offset();
    bool same = true;
    for (uint64_t i = 0; i < run.length(); ++i) {
      if (write) p[i] = static_cast<uint8_t>(i * 7);
      same &= p[i] == static_cast<uint8_t>(i * 7);
    }
    return same;
  };
  ASSERT_TRUE(write_read(true));
  d.Kill();
  ASSERT_TRUE(d.Restart().ok()) << d.Log();
  pool = d.Pool();
  v1::GetLeaseRequest get;
  get.set_lease_id(held.lease().id());
  v1::GetLeaseResponse got;
  ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->GetLease(ctx.get(), get, &got).ok()) << d.Log();
  EXPECT_EQ(RunsOf(got.lease()), RunsOf(held.lease()));
  EXPECT_EQ(got.lease().expires_unix_ms(),
            held.lease().expires_unix_ms());  // clock continues
  EXPECT_TRUE(write_read(false)) << "the backing was not re-attached as it was";
  // A graceful stop and start too.
  ASSERT_EQ(d.Stop(), 0);
  ASSERT_TRUE(d.Restart().ok()) << d.Log();
  pool = d.Pool();
  ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->GetLease(ctx.get(), get, &got).ok());
  // A host reboot: another boot id. The lease is void, memory free and zero.
  d.Kill();
  std::ofstream(boot) << "22222222-2222-2222-2222-222222222222\n";
  ASSERT_TRUE(d.Restart().ok()) << d.Log();
  pool = d.Pool();
  ctx = Ctx(kAlice);
  EXPECT_EQ(pool->GetLease(ctx.get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(d.Log(), HasSubstr("host rebooted since the store was written"));
  v1::GetPoolInfoResponse info;
  ctx = Ctx(kRoot);
  ASSERT_TRUE(pool->GetPoolInfo(ctx.get(), {}, &info).ok());
  EXPECT_EQ(info.free_bytes(), kTotal);
  // The void lease's view is gone; the same pages, leased again, read zero.
  EXPECT_EQ(MapView(d, held.lease().id(), kAlice).status().code(),
            absl::StatusCode::kNotFound);
  req.set_low(run.iova());
  req.set_high(run.iova() + run.length());
  v1::AllocateResponse again;
  ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->Allocate(ctx.get(), req, &again).ok());
  auto view = MapView(d, again.lease().id(), kAlice);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(again.lease().runs(0).iova(), run.iova());
  size_t nonzero = 0;
  for (uint64_t i = 0; i < (*view)->bytes; ++i)
    nonzero += (*view)->base[i] != 0;
  EXPECT_EQ(nonzero, 0u);
  RunCommand(absl::StrCat("rm -rf ", tmpl));
}

// A segment added at run time is recorded: after a kill -9 it is back at
// the same IOVA and backing, with the lease that lives in it; removed, it
// stays gone.
TEST(RestartTest, SegmentsAddedAtRunTimeSurviveWithTheirLeases) {
  auto started = Daemon::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  Daemon& d = **started;
  auto admin = d.Admin();
  v1::AddSegmentRequest add;
  add.set_bytes(2 << 20);
  add.set_freelist(1);
  v1::SegmentResponse seg;
  auto ctx = Ctx(kRoot);
  ASSERT_TRUE(admin->AddSegment(ctx.get(), add, &seg).ok());
  const uint64_t iova = seg.segment().iova();
  v1::AllocateRequest req;
  req.set_bytes(1 << 20);
  req.set_low(iova);
  req.set_high(iova + (2 << 20));
  v1::AllocateResponse held;
  ctx = Ctx(kAlice);
  ASSERT_TRUE(d.Pool()->Allocate(ctx.get(), req, &held).ok());
  const v1::Run& run = held.lease().runs(0);
  {
    auto view = MapView(d, held.lease().id(), kAlice);
    ASSERT_TRUE(view.ok()) << view.status();
    std::memcpy((*view)->base + run.view_offset(), "in the added segment", 20);
  }
  d.Kill();
  ASSERT_TRUE(d.Restart().ok()) << d.Log();
  v1::GetLeaseRequest get;
  get.set_lease_id(held.lease().id());
  v1::GetLeaseResponse got;
  ctx = Ctx(kAlice);
  // The first call may go out on the killed daemon's cached connection
  // (UNAVAILABLE, "Broken pipe"): retry as a client would.
  grpc::Status after = d.Pool()->GetLease(ctx.get(), get, &got);
  for (int i = 0; i < 5 && after.error_code() == grpc::StatusCode::UNAVAILABLE;
       ++i) {
    ctx = Ctx(kAlice);
    after = d.Pool()->GetLease(ctx.get(), get, &got);
  }
  ASSERT_TRUE(after.ok()) << after.error_message() << "\n" << d.Log();
  EXPECT_EQ(RunsOf(got.lease()), RunsOf(held.lease()));
  {
    auto view = MapView(d, held.lease().id(), kAlice);
    ASSERT_TRUE(view.ok()) << view.status() << "\n" << d.Log();
    EXPECT_EQ(
        std::string(reinterpret_cast<char*>((*view)->base) + run.view_offset(),
                    20),
        "in the added segment");
  }
  // Released and removed: not re-created at the next start.
  v1::ReleaseRequest rel;
  rel.set_lease_id(held.lease().id());
  v1::ReleaseResponse released;
  ctx = Ctx(kAlice);
  ASSERT_TRUE(d.Pool()->Release(ctx.get(), rel, &released).ok());
  v1::ListSegmentsResponse segs;
  admin = d.Admin();
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin->ListSegments(ctx.get(), {}, &segs).ok());
  uint32_t id = 0;
  for (const auto& s : segs.segments()) {
    if (s.iova() == iova) id = s.id();
  }
  ASSERT_NE(id, 0u);
  v1::SegmentRequest remove;
  remove.set_segment_id(id);
  bool removed = false;
  for (int i = 0; i < 100 && !removed; ++i) {  // after the scrubber zeroed it
    v1::RemoveSegmentResponse out;
    ctx = Ctx(kRoot);
    removed = admin->RemoveSegment(ctx.get(), remove, &out).ok();
    if (!removed) usleep(20 * 1000);
  }
  ASSERT_TRUE(removed);
  d.Kill();
  ASSERT_TRUE(d.Restart().ok()) << d.Log();
  grpc::Status listed;
  for (int i = 0; i < 5 && (i == 0 || listed.error_code() ==
                                          grpc::StatusCode::UNAVAILABLE);
       ++i) {
    ctx = Ctx(kRoot);
    segs.Clear();
    listed = d.Admin()->ListSegments(ctx.get(), {}, &segs);
  }
  ASSERT_TRUE(listed.ok()) << listed.error_message();
  for (const auto& s : segs.segments()) EXPECT_NE(s.iova(), iova);
}

TEST(RestartTest, DamagedOrForeignStoresAreRefused) {
  auto started = Daemon::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  Daemon& d = **started;
  ASSERT_EQ(d.Stop(), 0);
  const std::string db = d.dir() + "/leases.db";
  {
    std::ofstream(db, std::ios::trunc)
        << "this is not a database, just bytes\n";
  }
  EXPECT_FALSE(d.Restart().ok());
  EXPECT_THAT(d.Log(), HasSubstr("lease store refused"));
  EXPECT_THAT(d.Log(), HasSubstr(db));
  RunCommand("rm -f " + db + "*");
  RunResult r =
      RunCommand("/usr/bin/python3 -c \"import sqlite3; c = sqlite3.connect('" +
                 db + "'); c.execute('create table photos(x)'); c.commit()\"");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_FALSE(d.Restart().ok());
  EXPECT_THAT(d.Log(), HasSubstr("not a physpool lease store"));
  // The refused files are left as they were.
  r = RunCommand(
      "/usr/bin/python3 -c \"import sqlite3; print(sqlite3.connect('" + db +
      "').execute('select count(*) from photos').fetchone()[0])\"");
  EXPECT_EQ(r.output, "0\n");
}

}  // namespace
}  // namespace physpool::testing
