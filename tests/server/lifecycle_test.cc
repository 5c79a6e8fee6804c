// SPDX-License-Identifier: Apache-2.0
// The lease lifecycle against the real daemon, one test per defect of issue
// 11 that each failed on the daemon before the fix: restart after
// preemption, quotas under reclaim, waiters that can never be served,
// starvation that holds back only competitors, paged lists and the run cap,
// request ids, shutdown with reclaims in flight, the tenant role.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

using ::testing::HasSubstr;
using v1::AllocateRequest;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kTotal = 24 * kMiB;

struct Got {
  grpc::Status status;
  v1::Lease lease;
};

Got Allocate(v1::Pool::Stub* pool, const std::string& token,
             const AllocateRequest& req, double seconds = 10) {
  auto ctx = Ctx(token, seconds);
  v1::AllocateResponse resp;
  Got g;
  g.status = pool->Allocate(ctx.get(), req, &resp);
  g.lease = resp.lease();
  return g;
}

AllocateRequest Bytes(uint64_t bytes) {
  AllocateRequest r;
  r.set_bytes(bytes);
  return r;
}

grpc::Status Release(v1::Pool::Stub* pool, const std::string& token,
                     const std::string& id) {
  v1::ReleaseRequest req;
  req.set_lease_id(id);
  v1::ReleaseResponse resp;
  auto ctx = Ctx(token);
  return pool->Release(ctx.get(), req, &resp);
}

v1::GetPoolInfoResponse Info(v1::Pool::Stub* pool) {
  v1::GetPoolInfoResponse info;
  auto ctx = Ctx(kRoot);
  EXPECT_TRUE(pool->GetPoolInfo(ctx.get(), {}, &info).ok());
  return info;
}

bool Eventually(const std::function<bool()>& pred, double seconds = 10) {
  const auto end = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int>(seconds * 1000));
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// Used bytes equal leased bytes once zeroing is done, and no page is in two
// leases.
void ExpectConsistent(Daemon& d) {
  auto pool = d.Pool();
  auto admin = d.Admin();
  ASSERT_TRUE(
      Eventually([&] { return Info(pool.get()).scrubbing_bytes() == 0; }));
  uint64_t leased = 0;
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  for (const v1::Lease& l : AllLeases(admin.get(), kRoot)) {
    leased += l.bytes();
    for (const auto& r : l.runs()) runs.push_back({r.iova(), r.length()});
  }
  std::sort(runs.begin(), runs.end());
  for (size_t i = 1; i < runs.size(); ++i)
    EXPECT_LE(runs[i - 1].first + runs[i - 1].second, runs[i].first);
  const v1::GetPoolInfoResponse info = Info(pool.get());
  EXPECT_EQ(info.used_bytes(), leased);
  EXPECT_EQ(info.used_bytes() + info.free_bytes(), kTotal);
}

std::map<std::string, int> LeasesByTenant(Daemon& d) {
  auto admin = d.Admin();
  std::map<std::string, int> n;
  for (const v1::Lease& l : AllLeases(admin.get(), kRoot)) ++n[l.tenant()];
  return n;
}

std::vector<std::string> FillPreemptible(v1::Pool::Stub* pool,
                                         const std::string& token) {
  std::vector<std::string> ids;
  for (int i = 0; i < 24; ++i) {
    AllocateRequest req = Bytes(kMiB);
    req.set_preemptible(true);
    req.set_max_segments(1);
    Got g = Allocate(pool, token, req);
    EXPECT_TRUE(g.status.ok()) << g.status.error_message();
    ids.push_back(g.lease.id());
  }
  return ids;
}

AllocateRequest Reclaim(uint64_t bytes) {
  AllocateRequest req = Bytes(bytes);
  req.set_max_segments(1);
  req.set_may_reclaim(true);
  return req;
}

void SetLimits(v1::Admin::Stub* admin, const std::string& tenant,
               uint64_t bytes, uint32_t leases) {
  v1::SetTenantLimitsRequest set;
  set.set_tenant(tenant);
  set.mutable_limits()->set_max_bytes(bytes);
  set.mutable_limits()->set_max_leases(leases);
  v1::SetTenantLimitsResponse resp;
  auto ctx = Ctx(kRoot);
  ASSERT_TRUE(admin->SetTenantLimits(ctx.get(), set, &resp).ok());
}

std::unique_ptr<Daemon> Start(DaemonOptions o = {}) {
  auto d = Daemon::Start(o);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? std::move(*d) : nullptr;
}

// Defect 1: the preempted leases' zeroing rows were never deleted, and the
// next start failed ("stored lease ... does not fit the pool").
TEST(LifecycleTest, ADaemonThatPreemptedLeasesRestarts) {
  auto d = Start();
  ASSERT_TRUE(d);
  auto pool = d->Pool();
  FillPreemptible(pool.get(), kAlice);
  Got g = Allocate(pool.get(), kBob, Reclaim(4 * kMiB));
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.lease.path(), "aggressive");
  EXPECT_EQ(d->Stop(), 0);
  ASSERT_TRUE(d->Restart().ok()) << d->Log();
  pool = d->Pool();
  EXPECT_EQ(LeasesByTenant(*d),
            (std::map<std::string, int>{{"alice", 20}, {"bob", 1}}));
  ExpectConsistent(*d);
  // And after a kill -9 in the middle of a reclaim's grace period.
  std::thread reclaim([&] {
    auto p = d->Pool();
    Allocate(p.get(), kRoot, Reclaim(4 * kMiB));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  d->Kill();
  reclaim.join();
  ASSERT_TRUE(d->Restart().ok()) << d->Log();
  ExpectConsistent(*d);
  const auto n = LeasesByTenant(*d);
  EXPECT_EQ(n.at("bob"), 1);
  EXPECT_GE(n.at("alice"), 16);  // its preempted ones stay gone
  if (HasFailure()) std::fprintf(stderr, "%s", d->Log().c_str());
}

// Defect 2: reclaims were not counted against the quota until granted, so 4
// parallel ones of a tenant allowed 1 lease and 4 MiB got 4 and 16 MiB.
TEST(LifecycleTest, ReclaimIsCheckedAgainstTheQuotaAtGrantTime) {
  auto d = Start();
  ASSERT_TRUE(d);
  auto pool = d->Pool();
  auto admin = d->Admin();
  FillPreemptible(pool.get(), kAlice);
  SetLimits(admin.get(), "bob", 4 * kMiB, 1);
  std::atomic<int> ok{0}, quota{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      auto p = d->Pool();
      Got g = Allocate(p.get(), kBob, Reclaim(4 * kMiB));
      if (g.status.ok()) ++ok;
      if (g.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
          absl::StrContains(g.status.error_message(), "quota"))
        ++quota;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(quota, 3);
  v1::GetPoolInfoResponse info;
  auto ctx = Ctx(kBob);
  ASSERT_TRUE(pool->GetPoolInfo(ctx.get(), {}, &info).ok());
  EXPECT_EQ(info.tenant_leases(), 1u);
  EXPECT_EQ(info.tenant_bytes(), 4 * kMiB);
  ExpectConsistent(*d);
}

// Defect 3: a waiter over its quota stayed at the head of the queue and,
// once starving, held every other tenant's request back.
TEST(LifecycleTest, AWaiterThatCanNeverBeServedIsAnsweredAndBlocksNobody) {
  auto d = Start();
  ASSERT_TRUE(d);
  auto pool = d->Pool();
  SetLimits(d->Admin().get(), "bob", 0, 1);
  Got all = Allocate(pool.get(), kAlice, Bytes(kTotal));
  ASSERT_TRUE(all.status.ok());
  std::vector<grpc::Status> waited(2);
  std::vector<std::chrono::steady_clock::time_point> answered(2);
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&, i] {
      auto p = d->Pool();
      AllocateRequest req = Bytes(kMiB);
      req.set_may_wait(true);
      waited[i] = Allocate(p.get(), kBob, req, 30).status;
      answered[i] = std::chrono::steady_clock::now();
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(800));  // > starvation
  const auto freed = std::chrono::steady_clock::now();
  ASSERT_TRUE(Release(pool.get(), kAlice, all.lease.id()).ok());
  for (auto& t : waiters) t.join();
  int ok = 0, quota = 0;
  for (int i = 0; i < 2; ++i) {
    ok += waited[i].ok();
    quota += waited[i].error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
             absl::StrContains(waited[i].error_message(), "quota");
    // Answered at once, not at its 30 s deadline.
    EXPECT_LT(answered[i] - freed, std::chrono::seconds(10));
  }
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(quota, 1);
  // Nothing is held back now.
  Got carol = Allocate(pool.get(), kCarol, Bytes(256 * 1024));
  EXPECT_TRUE(carol.status.ok()) << carol.status.error_message();
}

// The starvation guard holds back only requests for the same memory.
TEST(LifecycleTest, AStarvingWaiterHoldsBackOnlyItsCompetitors) {
  auto d = Start();
  ASSERT_TRUE(d);
  auto pool = d->Pool();
  const v1::GetPoolInfoResponse info = Info(pool.get());
  ASSERT_EQ(info.segments_size(), 2);
  const v1::SegmentInfo& big = info.segments(0).bytes() == 16 * kMiB
                                   ? info.segments(0)
                                   : info.segments(1);
  const v1::SegmentInfo& small =
      &big == &info.segments(0) ? info.segments(1) : info.segments(0);
  auto in = [](const v1::SegmentInfo& s, uint64_t bytes) {
    AllocateRequest r = Bytes(bytes);
    r.set_low(s.iova());
    r.set_high(s.iova() + s.bytes());
    return r;
  };
  Got holder = Allocate(pool.get(), kAlice, in(big, kMiB));
  ASSERT_TRUE(holder.status.ok());
  grpc::Status big_status;
  std::thread waiter([&] {
    auto p = d->Pool();
    AllocateRequest req = in(big, 16 * kMiB);
    req.set_may_wait(true);
    big_status = Allocate(p.get(), kBob, req, 30).status;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));  // starving
  Got elsewhere = Allocate(pool.get(), kCarol, in(small, 256 * 1024));
  EXPECT_TRUE(elsewhere.status.ok()) << elsewhere.status.error_message();
  Got competitor = Allocate(pool.get(), kCarol, in(big, 256 * 1024));
  EXPECT_EQ(competitor.status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(competitor.status.error_message(), HasSubstr("served first"));
  ASSERT_TRUE(Release(pool.get(), kAlice, holder.lease.id()).ok());
  waiter.join();
  EXPECT_TRUE(big_status.ok()) << big_status.error_message();
}

// Defect 4: ListLeases of 40 000 leases exceeded gRPC's 4 MiB.
TEST(LifecycleTest, ListsPageAndEveryPageFitsTheMessageLimit) {
  DaemonOptions o;
  o.segments = {"{bytes: 209715200, freelist: 0, numa: 0}"};  // 200 MiB
  o.default_ttl_seconds = 600;
  auto d = Start(o);
  ASSERT_TRUE(d);
  constexpr int kLeases = 40000;
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto p = d->Pool();
      for (int i = 0; i < kLeases / 4; ++i) {
        AllocateRequest req = Bytes(4096);
        req.set_label(std::string(200, 'x'));  // bigger answers
        if (Allocate(p.get(), t % 2 ? kAlice : kBob, req).status.ok())
          ++granted;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(granted, kLeases);
  auto admin = d->Admin();
  // The client keeps gRPC's default 4 MiB receive limit: a bigger page
  // would fail the call.
  std::set<std::string> seen;
  v1::AdminListLeasesRequest req;
  req.set_page_size(5000);  // above the maximum: 1000
  int pages = 0;
  for (;; ++pages) {
    v1::ListLeasesResponse resp;
    auto ctx = Ctx(kRoot);
    const grpc::Status s = admin->ListLeases(ctx.get(), req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_LE(resp.leases_size(), 1000);
    EXPECT_LT(resp.ByteSizeLong(), 4u << 20);
    for (const auto& l : resp.leases()) EXPECT_TRUE(seen.insert(l.id()).second);
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kLeases));
  EXPECT_GE(pages, 39);
  // A tenant's own list pages too (default page size 100).
  auto pool = d->Pool();
  v1::ListLeasesRequest own;
  v1::ListLeasesResponse first;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->ListLeases(ctx.get(), own, &first).ok());
  EXPECT_EQ(first.leases_size(), 100);
  EXPECT_FALSE(first.next_page_token().empty());
  // Bad pages are INVALID_ARGUMENT.
  auto code = [&](v1::ListLeasesRequest r, const std::string& token) {
    v1::ListLeasesResponse resp;
    auto c = Ctx(token);
    return pool->ListLeases(c.get(), r, &resp).error_code();
  };
  own.set_page_size(-1);
  EXPECT_EQ(code(own, kAlice), grpc::StatusCode::INVALID_ARGUMENT);
  own.set_page_size(0);
  own.set_page_token("garbage");
  EXPECT_EQ(code(own, kAlice), grpc::StatusCode::INVALID_ARGUMENT);
  own.set_page_token(req.page_token());  // the admin list's token
  EXPECT_EQ(code(own, kAlice), grpc::StatusCode::INVALID_ARGUMENT);
  own.set_page_token(first.next_page_token());  // alice's, from bob
  EXPECT_EQ(code(own, kBob), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(own, kAlice), grpc::StatusCode::OK);
}

// Defect 4, second half: an allocation of tens of thousands of runs was
// granted and stored, but its answer could not be delivered.
TEST(LifecycleTest, ALeaseHasAtMostMaxRunsPerLeaseRuns) {
  DaemonOptions o;
  o.max_runs_per_lease = 16;
  auto d = Start(o);
  ASSERT_TRUE(d);
  auto pool = d->Pool();
  EXPECT_EQ(Info(pool.get()).max_runs_per_lease(), 16u);
  // Every other page of the pool in use: free memory in 4 KiB pieces.
  std::vector<std::string> ids;
  for (uint64_t i = 0; i < kTotal / 4096; ++i) {
    Got g = Allocate(pool.get(), kAlice, Bytes(4096));
    ASSERT_TRUE(g.status.ok());
    ids.push_back(g.lease.id());
  }
  for (size_t i = 0; i < ids.size(); i += 2)
    ASSERT_TRUE(Release(pool.get(), kAlice, ids[i]).ok());
  ASSERT_TRUE(
      Eventually([&] { return Info(pool.get()).free_bytes() == kTotal / 2; }));
  Got too_fragmented = Allocate(pool.get(), kBob, Bytes(64 * 4096));
  EXPECT_EQ(too_fragmented.status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(too_fragmented.status.error_message(),
              HasSubstr("max_runs_per_lease"));
  Got fits = Allocate(pool.get(), kBob, Bytes(16 * 4096));
  ASSERT_TRUE(fits.status.ok()) << fits.status.error_message();
  EXPECT_EQ(fits.lease.runs_size(), 16);
  AllocateRequest over = Bytes(4 * 4096);
  over.set_max_segments(17);
  Got refused = Allocate(pool.get(), kBob, over);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("max_runs_per_lease"));
  // Nothing was granted for the refusals.
  EXPECT_EQ(LeasesByTenant(*d).at("bob"), 1);
}

// Defect 5: a grant whose answer was lost could not be found again.
TEST(LifecycleTest, ARequestIdGetsTheSameLeaseAcrossRetriesAndRestarts) {
  auto d = Start();
  ASSERT_TRUE(d);
  auto pool = d->Pool();
  AllocateRequest req = Bytes(kMiB);
  req.set_request_id("5b1e0c2a-req-1");
  Got first = Allocate(pool.get(), kAlice, req);
  ASSERT_TRUE(first.status.ok());
  EXPECT_EQ(first.lease.request_id(), "5b1e0c2a-req-1");
  Got again = Allocate(pool.get(), kAlice, req);
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(again.lease.id(), first.lease.id());
  EXPECT_EQ(again.lease.runs(0).iova(), first.lease.runs(0).iova());
  // Another tenant's id space is its own.
  Got bobs = Allocate(pool.get(), kBob, req);
  ASSERT_TRUE(bobs.status.ok());
  EXPECT_NE(bobs.lease.id(), first.lease.id());
  // The same id with other parameters is refused.
  AllocateRequest other = req;
  other.set_bytes(2 * kMiB);
  EXPECT_EQ(Allocate(pool.get(), kAlice, other).status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // Across a crash.
  d->Kill();
  ASSERT_TRUE(d->Restart().ok());
  pool = d->Pool();
  Got after = Allocate(pool.get(), kAlice, req);
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.lease.id(), first.lease.id());
  EXPECT_EQ(LeasesByTenant(*d).at("alice"), 1);
  // An ended lease's id is not granted again.
  ASSERT_TRUE(Release(pool.get(), kAlice, first.lease.id()).ok());
  Got ended = Allocate(pool.get(), kAlice, req);
  EXPECT_EQ(ended.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(ended.status.error_message(), HasSubstr("has ended"));
  // A final error is the same on a retry.
  AllocateRequest never = Bytes(2 * kTotal);
  never.set_request_id("never-fits");
  Got e1 = Allocate(pool.get(), kAlice, never);
  Got e2 = Allocate(pool.get(), kAlice, never);
  EXPECT_EQ(e1.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(e2.status.error_code(), e1.status.error_code());
  EXPECT_EQ(e2.status.error_message(), e1.status.error_message());
  AllocateRequest bad = Bytes(4096);
  bad.set_request_id("has a space");
  EXPECT_EQ(Allocate(pool.get(), kAlice, bad).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// A retry of a waiting request takes over its wait.
TEST(LifecycleTest, ARetryTakesOverTheWaitOfItsRequestId) {
  auto d = Start();
  ASSERT_TRUE(d);
  auto pool = d->Pool();
  Got all = Allocate(pool.get(), kRoot, Bytes(kTotal));
  ASSERT_TRUE(all.status.ok());
  AllocateRequest req = Bytes(kMiB);
  req.set_may_wait(true);
  req.set_request_id("wait-1");
  grpc::Status original;
  std::thread t1([&] {
    auto p = d->Pool();
    original = Allocate(p.get(), kAlice, req, 20).status;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Got retry;
  std::thread t2([&] {
    auto p = d->Pool();
    retry = Allocate(p.get(), kAlice, req, 20);
  });
  t1.join();  // answered when the retry took over
  EXPECT_EQ(original.error_code(), grpc::StatusCode::ABORTED);
  ASSERT_TRUE(Release(pool.get(), kRoot, all.lease.id()).ok());
  t2.join();
  ASSERT_TRUE(retry.status.ok()) << retry.status.error_message();
  Got third = Allocate(pool.get(), kAlice, req);
  EXPECT_EQ(third.lease.id(), retry.lease.id());
  EXPECT_EQ(LeasesByTenant(*d).at("alice"), 1);
}

// Defect 9: queued reclaim completions were never answered at shutdown, and
// a cancelled request's reclaim still became a lease nobody held.
TEST(LifecycleTest, ShutdownAnswersReclaimsAndCancelledOnesBecomeNoLease) {
  DaemonOptions o;
  o.reclaim_grace_ms = 1500;
  auto d = Start(o);
  ASSERT_TRUE(d);
  auto pool = d->Pool();
  FillPreemptible(pool.get(), kAlice);
  // Cancelled: the caller's deadline is shorter than the grace period.
  Got cancelled = Allocate(pool.get(), kBob, Reclaim(4 * kMiB), 0.3);
  EXPECT_EQ(cancelled.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // After the grace period the victims' memory comes back, and bob has no
  // lease.
  ASSERT_TRUE(Eventually(
      [&] { return Info(pool.get()).free_bytes() == 4 * kMiB; }, 15));
  EXPECT_EQ(LeasesByTenant(*d).count("bob"), 0u);
  ExpectConsistent(*d);
  // In flight at SIGTERM (a reclaim in its grace period): answered
  // UNAVAILABLE.
  ASSERT_TRUE(Allocate(pool.get(), kBob, Bytes(4 * kMiB)).status.ok());
  grpc::Status inflight;
  std::thread t([&] {
    auto p = d->Pool();
    inflight = Allocate(p.get(), kCarol, Reclaim(512 * 1024), 20).status;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(d->Stop(), 0);
  t.join();
  EXPECT_EQ(inflight.error_code(), grpc::StatusCode::UNAVAILABLE)
      << inflight.error_message();
  ASSERT_TRUE(d->Restart().ok()) << d->Log();
  ExpectConsistent(*d);
}

// Defect 10, the tenant role: an admin-only identity may not allocate.
TEST(LifecycleTest, TheTenantRoleIsChecked) {
  auto d = Start();
  ASSERT_TRUE(d);
  auto pool = d->Pool();
  Got g = Allocate(pool.get(), kOps, Bytes(4096));
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(g.status.error_message(), HasSubstr("tenant role"));
  v1::ListLeasesResponse list;
  auto ctx = Ctx(kOps);
  EXPECT_EQ(pool->ListLeases(ctx.get(), {}, &list).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // It remains an admin.
  auto admin = d->Admin();
  v1::GetStatsResponse stats;
  auto actx = Ctx(kOps);
  EXPECT_TRUE(admin->GetStats(actx.get(), {}, &stats).ok());
  EXPECT_TRUE(stats.store_writable());
}

}  // namespace
}  // namespace physpool::testing
