// SPDX-License-Identifier: Apache-2.0
// physpoold end to end: the real binary over its unix socket and TCP port,
// driven through the generated C++ stubs.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

using ::testing::HasSubstr;
using v1::AllocateRequest;
using v1::Lease;
using v1::LeaseEvent;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kTotal = 24 * kMiB;  // the test config's two segments

struct Got {
  grpc::Status status;
  Lease lease;
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

v1::GetPoolInfoResponse Info(v1::Pool::Stub* pool,
                             const std::string& token = kRoot) {
  v1::GetPoolInfoResponse info;
  auto ctx = Ctx(token);
  EXPECT_TRUE(pool->GetPoolInfo(ctx.get(), {}, &info).ok());
  return info;
}

// Polls until `pred` holds (memory comes back after zeroing, asynchronously).
bool Eventually(const std::function<bool()>& pred, double seconds = 10) {
  const auto end = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int>(seconds * 1000));
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

bool AllFree(v1::Pool::Stub* pool) {
  return Eventually([&] { return Info(pool).free_bytes() == kTotal; });
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartDaemon({}); }
  void StartDaemon(DaemonOptions o) {
    auto d = Daemon::Start(o);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    pool_ = daemon_->Pool();
    admin_ = daemon_->Admin();
  }
  void TearDown() override {
    if (HasFailure() && daemon_)
      std::fprintf(stderr, "physpoold log:\n%s", daemon_->Log().c_str());
  }
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<v1::Pool::Stub> pool_;
  std::unique_ptr<v1::Admin::Stub> admin_;
};

TEST_F(ServerTest, HealthIsServingOnUnixAndTcp) {
  for (auto ch : {daemon_->UnixChannel(), daemon_->TcpChannel()}) {
    auto health = grpc::health::v1::Health::NewStub(ch);
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    auto ctx = Ctx("");
    ASSERT_TRUE(health->Check(ctx.get(), req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  // The Pool service over TCP too.
  auto tcp = v1::Pool::NewStub(daemon_->TcpChannel());
  EXPECT_EQ(Info(tcp.get()).page_size(), 4096u);
}

TEST_F(ServerTest, AllocateGivesRunsAndBackingThatMapTheSameMemory) {
  AllocateRequest req = Bytes(64 * 1024);
  req.set_alignment(64 * 1024);
  req.set_max_segments(1);
  req.set_label("dma ring");
  Got g = Allocate(pool_.get(), kAlice, req);
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  const Lease& l = g.lease;
  EXPECT_THAT(l.id(), ::testing::StartsWith("l-"));
  EXPECT_EQ(l.tenant(), "alice");
  EXPECT_EQ(l.bytes(), 64 * 1024u);
  ASSERT_EQ(l.runs_size(), 1);
  EXPECT_EQ(l.runs(0).iova() % (64 * 1024), 0u);
  EXPECT_EQ(l.path(), "contig");
  EXPECT_EQ(l.label(), "dma ring");
  EXPECT_EQ(l.ttl_seconds(), 30u);
  EXPECT_GT(l.expires_unix_ms(), 0);
  // GetLease, ListLeases agree.
  v1::GetLeaseRequest get;
  get.set_lease_id(l.id());
  v1::GetLeaseResponse got;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool_->GetLease(ctx.get(), get, &got).ok());
  EXPECT_EQ(got.lease().runs(0).iova(), l.runs(0).iova());
  v1::ListLeasesResponse list;
  ctx = Ctx(kAlice);
  ASSERT_TRUE(pool_->ListLeases(ctx.get(), {}, &list).ok());
  ASSERT_EQ(list.leases_size(), 1);
  // The lease's view (fd socket) is the memory: no path to any file.
  EXPECT_EQ(l.runs(0).backing_path(), "");
  {
    auto view = MapView(*daemon_, l.id(), kAlice);
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ((*view)->bytes, l.bytes());
    EXPECT_EQ((*view)->base[l.runs(0).view_offset() + 100], 0);
  }
  // Pool info counts it.
  const auto info = Info(pool_.get(), kAlice);
  EXPECT_EQ(info.used_bytes(), 64 * 1024u);
  EXPECT_EQ(info.tenant(), "alice");
  EXPECT_EQ(info.tenant_bytes(), 64 * 1024u);
  EXPECT_EQ(info.tenant_leases(), 1u);
  EXPECT_EQ(info.source(), "sim");
  EXPECT_EQ(info.segments_size(), 2);
}

TEST_F(ServerTest, RenewExtendsAndReleaseIsIdempotent) {
  AllocateRequest req = Bytes(8192);
  req.set_ttl_seconds(5);
  Got g = Allocate(pool_.get(), kAlice, req);
  ASSERT_TRUE(g.status.ok());
  v1::RenewRequest renew;
  renew.set_lease_id(g.lease.id());
  renew.set_ttl_seconds(100);
  v1::RenewResponse renewed;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool_->Renew(ctx.get(), renew, &renewed).ok());
  EXPECT_EQ(renewed.lease().ttl_seconds(), 100u);
  EXPECT_GT(renewed.lease().expires_unix_ms(),
            g.lease.expires_unix_ms() + 90000);
  v1::ReleaseRequest rel;
  rel.set_lease_id(g.lease.id());
  v1::ReleaseResponse released;
  ctx = Ctx(kAlice);
  ASSERT_TRUE(pool_->Release(ctx.get(), rel, &released).ok());
  EXPECT_TRUE(released.released());
  ctx = Ctx(kAlice);
  ASSERT_TRUE(pool_->Release(ctx.get(), rel, &released).ok());
  EXPECT_FALSE(released.released());
  ctx = Ctx(kAlice);
  const grpc::Status again = pool_->Renew(ctx.get(), renew, &renewed);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(again.error_message(), HasSubstr("has ended (released)"));
  EXPECT_TRUE(AllFree(pool_.get()));
}

TEST_F(ServerTest, TenantsDoNotSeeEachOther) {
  Got g = Allocate(pool_.get(), kAlice, Bytes(4096));
  ASSERT_TRUE(g.status.ok());
  v1::GetLeaseRequest get;
  get.set_lease_id(g.lease.id());
  v1::GetLeaseResponse resp;
  auto ctx = Ctx(kBob);
  EXPECT_EQ(pool_->GetLease(ctx.get(), get, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ReleaseRequest rel;
  rel.set_lease_id(g.lease.id());
  v1::ReleaseResponse released;
  ctx = Ctx(kBob);
  EXPECT_EQ(pool_->Release(ctx.get(), rel, &released).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::RenewRequest renew;
  renew.set_lease_id(g.lease.id());
  v1::RenewResponse renewed;
  ctx = Ctx(kBob);
  EXPECT_EQ(pool_->Renew(ctx.get(), renew, &renewed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ListLeasesResponse list;
  ctx = Ctx(kBob);
  ASSERT_TRUE(pool_->ListLeases(ctx.get(), {}, &list).ok());
  EXPECT_EQ(list.leases_size(), 0);
  // Bob's watch never sees Alice's events.
  auto watch_ctx = Ctx(kBob, 3);
  auto reader = pool_->Watch(watch_ctx.get(), {});
  reader->WaitForInitialMetadata();
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(g.lease.id());
  v1::RevokeLeaseResponse revoked;
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->RevokeLease(ctx.get(), revoke, &revoked).ok());
  LeaseEvent e;
  EXPECT_FALSE(reader->Read(&e));  // ends at the deadline with nothing read
}

TEST_F(ServerTest, CallersMustAuthenticateAndAdminNeedsTheRole) {
  for (const char* token : {"", "wrong-token"}) {
    v1::GetPoolInfoResponse info;
    auto ctx = Ctx(token);
    EXPECT_EQ(pool_->GetPoolInfo(ctx.get(), {}, &info).error_code(),
              grpc::StatusCode::UNAUTHENTICATED)
        << token;
  }
  grpc::ClientContext raw;
  raw.AddMetadata("authorization", "Basic abc");
  v1::GetPoolInfoResponse info;
  EXPECT_EQ(pool_->GetPoolInfo(&raw, {}, &info).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::ListSegmentsResponse segs;
  auto ctx = Ctx(kAlice);
  const grpc::Status denied = admin_->ListSegments(ctx.get(), {}, &segs);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.error_message(), HasSubstr("admin role"));
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->ListSegments(ctx.get(), {}, &segs).ok());
  EXPECT_EQ(segs.segments_size(), 2);
}

TEST_F(ServerTest, QuotasHoldEvenUnderConcurrentRequests) {
  // carol: at most 2 leases and 1 MiB.
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, quota{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto pool = daemon_->Pool();
      Got g = Allocate(pool.get(), kCarol, Bytes(256 * 1024));
      if (g.status.ok()) ++ok;
      if (g.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
          g.status.error_message().find("quota") != std::string::npos) {
        ++quota;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(quota, 6);
  Got big = Allocate(pool_.get(), kCarol, Bytes(2 * kMiB));
  EXPECT_EQ(big.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(big.status.error_message(), HasSubstr("quota"));
  // An admin raises the limits.
  v1::SetTenantLimitsRequest set;
  set.set_tenant("carol");
  set.mutable_limits()->set_max_leases(3);
  set.mutable_limits()->set_max_bytes(4 * kMiB);
  v1::SetTenantLimitsResponse updated;
  auto ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->SetTenantLimits(ctx.get(), set, &updated).ok());
  EXPECT_EQ(updated.tenant().leases(), 2u);
  EXPECT_TRUE(Allocate(pool_.get(), kCarol, Bytes(2 * kMiB)).status.ok());
}

TEST_F(ServerTest, WaitingRequestsGetMemoryWhenItFreesOrFailAtTheirDeadline) {
  Got all = Allocate(pool_.get(), kAlice, Bytes(kTotal));
  ASSERT_TRUE(all.status.ok()) << all.status.error_message();
  // Without waiting: RESOURCE_EXHAUSTED at once.
  EXPECT_EQ(Allocate(pool_.get(), kBob, Bytes(4096)).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Waiting with a short deadline: DEADLINE_EXCEEDED.
  AllocateRequest wait = Bytes(4096);
  wait.set_may_wait(true);
  EXPECT_EQ(Allocate(pool_.get(), kBob, wait, 0.5).status.error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  // Waiting while Alice releases: served.
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    v1::ReleaseRequest rel;
    rel.set_lease_id(all.lease.id());
    v1::ReleaseResponse r;
    auto ctx = Ctx(kAlice);
    EXPECT_TRUE(pool_->Release(ctx.get(), rel, &r).ok());
  });
  Got served = Allocate(pool_.get(), kBob, wait, 10);
  release.join();
  EXPECT_TRUE(served.status.ok()) << served.status.error_message();
  v1::GetStatsResponse stats;
  auto ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->GetStats(ctx.get(), {}, &stats).ok());
  EXPECT_EQ(stats.fallbacks().at("any->wait"), 2u);
}

TEST_F(ServerTest, BigWaiterIsNotStarvedBySmallOnes) {
  // Fill; a big waiter queues; small requests keep coming while memory frees
  // in small pieces. After the starvation time the big one goes first.
  std::vector<std::string> smalls;
  for (int i = 0; i < 24; ++i) {
    Got g = Allocate(pool_.get(), kAlice, Bytes(kMiB));
    ASSERT_TRUE(g.status.ok());
    smalls.push_back(g.lease.id());
  }
  std::atomic<bool> big_done{false};
  grpc::Status big_status;
  std::thread big([&] {
    auto pool = daemon_->Pool();
    AllocateRequest req = Bytes(4 * kMiB);
    req.set_may_wait(true);
    big_status = Allocate(pool.get(), kBob, req, 20).status;
    big_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // Churn: free one MiB, allocate one MiB (non-waiting), for 2 s.
  int i = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!big_done && std::chrono::steady_clock::now() < end) {
    v1::ReleaseRequest rel;
    rel.set_lease_id(smalls[i++ % smalls.size()]);
    v1::ReleaseResponse r;
    auto ctx = Ctx(kAlice);
    pool_->Release(ctx.get(), rel, &r);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    Got g = Allocate(pool_.get(), kAlice, Bytes(kMiB));
    if (g.status.ok()) smalls.push_back(g.lease.id());
  }
  big.join();
  EXPECT_TRUE(big_status.ok()) << big_status.error_message();
}

TEST_F(ServerTest, ExpiryReturnsMemoryAndTellsTheWatcher) {
  auto watch_ctx = Ctx(kAlice, 10);
  auto reader = pool_->Watch(watch_ctx.get(), {});
  reader->WaitForInitialMetadata();
  AllocateRequest req = Bytes(kMiB);
  req.set_ttl_seconds(2);
  Got g = Allocate(pool_.get(), kAlice, req);
  ASSERT_TRUE(g.status.ok());
  LeaseEvent e;
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.kind(), LeaseEvent::EXPIRING);  // 1 s before
  EXPECT_EQ(e.lease_id(), g.lease.id());
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.kind(), LeaseEvent::EXPIRED);
  EXPECT_TRUE(AllFree(pool_.get()));
  v1::GetLeaseRequest get;
  get.set_lease_id(g.lease.id());
  v1::GetLeaseResponse resp;
  auto ctx = Ctx(kAlice);
  EXPECT_EQ(pool_->GetLease(ctx.get(), get, &resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
  watch_ctx->TryCancel();
}

TEST_F(ServerTest, AdminRevocationTellsTheOwner) {
  Got g = Allocate(pool_.get(), kAlice, Bytes(kMiB));
  ASSERT_TRUE(g.status.ok());
  auto watch_ctx = Ctx(kAlice, 10);
  auto reader = pool_->Watch(watch_ctx.get(), {});
  reader->WaitForInitialMetadata();
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(g.lease.id());
  revoke.set_reason("maintenance");
  v1::RevokeLeaseResponse revoked;
  auto ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->RevokeLease(ctx.get(), revoke, &revoked).ok());
  EXPECT_EQ(revoked.lease().id(), g.lease.id());
  LeaseEvent e;
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.kind(), LeaseEvent::REVOKED);
  EXPECT_EQ(e.reason(), "maintenance");
  EXPECT_TRUE(AllFree(pool_.get()));
  watch_ctx->TryCancel();
}

TEST_F(ServerTest, PreemptionReclaimsAfterTheGracePeriod) {
  // Alice fills the pool with preemptible leases; Bob needs 4 MiB contiguous.
  std::vector<std::string> ids;
  for (int i = 0; i < 24; ++i) {
    AllocateRequest req = Bytes(kMiB);
    req.set_preemptible(true);
    Got g = Allocate(pool_.get(), kAlice, req);
    ASSERT_TRUE(g.status.ok());
    ids.push_back(g.lease.id());
  }
  auto watch_ctx = Ctx(kAlice, 10);
  auto reader = pool_->Watch(watch_ctx.get(), {});
  reader->WaitForInitialMetadata();
  AllocateRequest req = Bytes(4 * kMiB);
  req.set_max_segments(1);
  EXPECT_EQ(Allocate(pool_.get(), kBob, req).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  req.set_may_reclaim(true);
  const auto t0 = std::chrono::steady_clock::now();
  Got g = Allocate(pool_.get(), kBob, req);
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.lease.path(), "aggressive");
  EXPECT_GE(waited, std::chrono::milliseconds(200));  // the grace period
  // Four of Alice's leases were preempted, with a deadline.
  int preempted = 0;
  LeaseEvent e;
  while (preempted < 4 && reader->Read(&e)) {
    EXPECT_EQ(e.kind(), LeaseEvent::PREEMPTED);
    EXPECT_GT(e.deadline_unix_ms(), e.unix_ms());
    EXPECT_THAT(e.reason(), HasSubstr("bob"));
    ++preempted;
  }
  EXPECT_EQ(preempted, 4);
  v1::ListLeasesResponse list;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool_->ListLeases(ctx.get(), {}, &list).ok());
  EXPECT_EQ(list.leases_size(), 20);
  watch_ctx->TryCancel();
}

TEST_F(ServerTest, MemoryIsZeroedBeforeAnotherTenantGetsIt) {
  Got a = Allocate(pool_.get(), kAlice, Bytes(kTotal));
  ASSERT_TRUE(a.status.ok());
  // Alice writes a pattern through her lease's view (then unmaps it).
  {
    auto view = MapView(*daemon_, a.lease.id(), kAlice);
    ASSERT_TRUE(view.ok()) << view.status();
    std::memset((*view)->base, 0xA5, (*view)->bytes);
  }
  v1::ReleaseRequest rel;
  rel.set_lease_id(a.lease.id());
  v1::ReleaseResponse r;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool_->Release(ctx.get(), rel, &r).ok());
  // Bob waits for the same pages (the whole pool) and reads zeros.
  AllocateRequest req = Bytes(kTotal);
  req.set_may_wait(true);
  Got b = Allocate(pool_.get(), kBob, req, 20);
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  auto view = MapView(*daemon_, b.lease.id(), kBob);
  ASSERT_TRUE(view.ok()) << view.status();
  for (const auto& run : b.lease.runs()) {
    const uint8_t* bytes = (*view)->base + run.view_offset();
    size_t nonzero = 0;
    for (uint64_t i = 0; i < run.length(); ++i) nonzero += bytes[i] != 0;
    EXPECT_EQ(nonzero, 0u) << run.iova();
  }
}

TEST_F(ServerTest, AdminSegmentsTenantsStatsAndOccupancy) {
  auto ctx = Ctx(kRoot);
  v1::ListSegmentsResponse segs;
  ASSERT_TRUE(admin_->ListSegments(ctx.get(), {}, &segs).ok());
  const uint32_t first = segs.segments(0).id();
  v1::SegmentRequest sr;
  sr.set_segment_id(first);
  v1::SegmentResponse seg;
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->DrainSegment(ctx.get(), sr, &seg).ok());
  EXPECT_TRUE(seg.segment().draining());
  Got g = Allocate(pool_.get(), kAlice, Bytes(kMiB));
  ASSERT_TRUE(g.status.ok());
  EXPECT_NE(g.lease.runs(0).segment_id(), first);
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->UndrainSegment(ctx.get(), sr, &seg).ok());
  EXPECT_FALSE(seg.segment().draining());
  // Add and remove a segment.
  v1::AddSegmentRequest add;
  add.set_bytes(2 * kMiB);
  add.set_freelist(2);
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->AddSegment(ctx.get(), add, &seg).ok());
  EXPECT_EQ(seg.segment().bytes(), 2 * kMiB);
  sr.set_segment_id(seg.segment().id());
  v1::RemoveSegmentResponse removed;
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->RemoveSegment(ctx.get(), sr, &removed).ok());
  // A busy segment cannot be removed.
  sr.set_segment_id(g.lease.runs(0).segment_id());
  ctx = Ctx(kRoot);
  EXPECT_EQ(admin_->RemoveSegment(ctx.get(), sr, &removed).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // Tenants, leases, stats.
  v1::ListTenantsResponse tenants;
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->ListTenants(ctx.get(), {}, &tenants).ok());
  EXPECT_EQ(tenants.tenants_size(), 5);
  v1::AdminListLeasesRequest al;
  v1::ListLeasesResponse leases;
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->ListLeases(ctx.get(), al, &leases).ok());
  EXPECT_EQ(leases.leases_size(), 1);
  al.set_tenant("bob");
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->ListLeases(ctx.get(), al, &leases).ok());
  EXPECT_EQ(leases.leases_size(), 0);
  v1::GetStatsResponse stats;
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->GetStats(ctx.get(), {}, &stats).ok());
  EXPECT_EQ(stats.paths(0).path(), "simple");
  EXPECT_EQ(stats.paths(0).successes(), 1u);
  // Occupancy: the used run and the free rest, covering the segment.
  v1::OccupancyRequest oreq;
  oreq.set_segment_id(g.lease.runs(0).segment_id());
  v1::OccupancyResponse occ;
  ctx = Ctx(kRoot);
  ASSERT_TRUE(admin_->GetOccupancy(ctx.get(), oreq, &occ).ok());
  ASSERT_EQ(occ.segments_size(), 1);
  uint64_t covered = 0, used = 0;
  for (const auto& run : occ.segments(0).runs()) {
    covered += run.length();
    if (run.state() == v1::OccupancyRun::USED) used += run.length();
  }
  EXPECT_EQ(covered, occ.segments(0).segment().bytes());
  EXPECT_EQ(used, kMiB);
}

// The bad-request table: every entry gets its status code, the daemon stays
// healthy, and no memory is lost.
TEST_F(ServerTest, BadRequestsGetTheirStatusAndLoseNothing) {
  Got held = Allocate(pool_.get(), kAlice, Bytes(kMiB));
  ASSERT_TRUE(held.status.ok());
  const uint64_t free_before = Info(pool_.get()).free_bytes();
  using grpc::StatusCode;
  struct Case {
    const char* name;
    std::function<grpc::Status()> call;
    StatusCode want;
  };
  auto alloc = [&](std::function<void(AllocateRequest&)> edit,
                   const char* token = kBob) {
    return [&, edit, token] {
      AllocateRequest r = Bytes(4096);
      edit(r);
      return Allocate(pool_.get(), token, r).status;
    };
  };
  auto lease_call = [&](const std::string& token, const std::string& id,
                        int which) {
    return [&, token, id, which] {
      auto ctx = Ctx(token);
      if (which == 0) {
        v1::GetLeaseRequest q;
        q.set_lease_id(id);
        v1::GetLeaseResponse r;
        return pool_->GetLease(ctx.get(), q, &r);
      }
      if (which == 1) {
        v1::RenewRequest q;
        q.set_lease_id(id);
        v1::RenewResponse r;
        return pool_->Renew(ctx.get(), q, &r);
      }
      v1::ReleaseRequest q;
      q.set_lease_id(id);
      v1::ReleaseResponse r;
      return pool_->Release(ctx.get(), q, &r);
    };
  };
  auto admin_seg = [&](int which, uint32_t id, const char* token = kRoot) {
    return [&, which, id, token] {
      auto ctx = Ctx(token);
      v1::SegmentRequest q;
      q.set_segment_id(id);
      v1::SegmentResponse r;
      v1::RemoveSegmentResponse rr;
      if (which == 0) return admin_->DrainSegment(ctx.get(), q, &r);
      if (which == 1) return admin_->UndrainSegment(ctx.get(), q, &r);
      return admin_->RemoveSegment(ctx.get(), q, &rr);
    };
  };
  const std::string id = held.lease.id();
  const std::vector<Case> cases = {
      {"zero bytes", alloc([](auto& r) { r.set_bytes(0); }),
       StatusCode::INVALID_ARGUMENT},
      {"alignment 3", alloc([](auto& r) { r.set_alignment(3); }),
       StatusCode::INVALID_ARGUMENT},
      {"alignment 3 pages", alloc([](auto& r) { r.set_alignment(12288); }),
       StatusCode::INVALID_ARGUMENT},
      {"boundary not pow2", alloc([](auto& r) { r.set_boundary(12345); }),
       StatusCode::INVALID_ARGUMENT},
      {"boundary < size",
       alloc([](auto& r) { r.set_bytes(8192), r.set_boundary(4096); }),
       StatusCode::INVALID_ARGUMENT},
      {"empty window",
       alloc([](auto& r) { r.set_low(1 << 30), r.set_high(1 << 30); }),
       StatusCode::INVALID_ARGUMENT},
      {"inverted window",
       alloc([](auto& r) { r.set_low(2 << 30), r.set_high(1 << 30); }),
       StatusCode::INVALID_ARGUMENT},
      {"window too small", alloc([](auto& r) {
         r.set_bytes(8192), r.set_low(0), r.set_high(4096);
       }),
       StatusCode::INVALID_ARGUMENT},
      {"size overflows", alloc([](auto& r) { r.set_bytes(~uint64_t{0}); }),
       StatusCode::INVALID_ARGUMENT},
      {"ttl above max", alloc([](auto& r) { r.set_ttl_seconds(100000); }),
       StatusCode::INVALID_ARGUMENT},
      {"negative numa", alloc([](auto& r) { r.set_numa_node(-2); }),
       StatusCode::INVALID_ARGUMENT},
      {"strict without numa", alloc([](auto& r) { r.set_numa_strict(true); }),
       StatusCode::INVALID_ARGUMENT},
      {"unknown device", alloc([](auto& r) { r.set_device("0000:00:01.0"); }),
       StatusCode::INVALID_ARGUMENT},
      {"label too long",
       alloc([](auto& r) { r.set_label(std::string(300, 'x')); }),
       StatusCode::INVALID_ARGUMENT},
      {"bigger than the pool", alloc([](auto& r) { r.set_bytes(1ull << 40); }),
       StatusCode::RESOURCE_EXHAUSTED},
      {"contig bigger than any segment",
       alloc([](auto& r) { r.set_bytes(17 * kMiB), r.set_max_segments(1); }),
       StatusCode::RESOURCE_EXHAUSTED},
      {"window outside memory",
       alloc([](auto& r) { r.set_low(0), r.set_high(1 << 20); }),
       StatusCode::RESOURCE_EXHAUSTED},
      {"strict numa node 7",
       alloc([](auto& r) { r.set_numa_node(7), r.set_numa_strict(true); }),
       StatusCode::RESOURCE_EXHAUSTED},
      {"no token", alloc([](auto&) {}, ""), StatusCode::UNAUTHENTICATED},
      {"bad token", alloc([](auto&) {}, "nope"), StatusCode::UNAUTHENTICATED},
      {"get: empty id", lease_call(kAlice, "", 0),
       StatusCode::INVALID_ARGUMENT},
      {"get: unknown id", lease_call(kAlice, "l-0000", 0),
       StatusCode::NOT_FOUND},
      {"get: other's lease", lease_call(kBob, id, 0),
       StatusCode::PERMISSION_DENIED},
      {"get: id too long", lease_call(kAlice, std::string(200, 'l'), 0),
       StatusCode::INVALID_ARGUMENT},
      {"renew: unknown", lease_call(kAlice, "l-0001", 1),
       StatusCode::NOT_FOUND},
      {"renew: other's", lease_call(kBob, id, 1),
       StatusCode::PERMISSION_DENIED},
      {"renew: empty id", lease_call(kAlice, "", 1),
       StatusCode::INVALID_ARGUMENT},
      {"release: unknown", lease_call(kAlice, "l-0002", 2),
       StatusCode::NOT_FOUND},
      {"release: other's", lease_call(kBob, id, 2),
       StatusCode::PERMISSION_DENIED},
      {"release: no token", lease_call("", id, 2), StatusCode::UNAUTHENTICATED},
      {"admin: not admin", admin_seg(0, 0, kAlice),
       StatusCode::PERMISSION_DENIED},
      {"admin: drain unknown", admin_seg(0, 99), StatusCode::NOT_FOUND},
      {"admin: undrain unknown", admin_seg(1, 99), StatusCode::NOT_FOUND},
      {"admin: remove unknown", admin_seg(2, 99), StatusCode::NOT_FOUND},
      {"admin: revoke unknown",
       [&] {
         auto ctx = Ctx(kRoot);
         v1::RevokeLeaseRequest q;
         q.set_lease_id("l-ffff");
         v1::RevokeLeaseResponse r;
         return admin_->RevokeLease(ctx.get(), q, &r);
       },
       StatusCode::NOT_FOUND},
      {"admin: add zero bytes",
       [&] {
         auto ctx = Ctx(kRoot);
         v1::AddSegmentRequest q;
         v1::SegmentResponse r;
         return admin_->AddSegment(ctx.get(), q, &r);
       },
       StatusCode::INVALID_ARGUMENT},
      {"admin: add unaligned",
       [&] {
         auto ctx = Ctx(kRoot);
         v1::AddSegmentRequest q;
         q.set_bytes(1000);
         v1::SegmentResponse r;
         return admin_->AddSegment(ctx.get(), q, &r);
       },
       StatusCode::INVALID_ARGUMENT},
      {"admin: limits unknown tenant",
       [&] {
         auto ctx = Ctx(kRoot);
         v1::SetTenantLimitsRequest q;
         q.set_tenant("mallory");
         v1::SetTenantLimitsResponse r;
         return admin_->SetTenantLimits(ctx.get(), q, &r);
       },
       StatusCode::NOT_FOUND},
      {"admin: limits no tenant",
       [&] {
         auto ctx = Ctx(kRoot);
         v1::SetTenantLimitsRequest q;
         v1::SetTenantLimitsResponse r;
         return admin_->SetTenantLimits(ctx.get(), q, &r);
       },
       StatusCode::INVALID_ARGUMENT},
      {"admin: occupancy unknown segment",
       [&] {
         auto ctx = Ctx(kRoot);
         v1::OccupancyRequest q;
         q.set_segment_id(77);
         v1::OccupancyResponse r;
         return admin_->GetOccupancy(ctx.get(), q, &r);
       },
       StatusCode::NOT_FOUND},
  };
  ASSERT_GE(cases.size(), 30u);
  for (const Case& c : cases) {
    const grpc::Status s = c.call();
    EXPECT_EQ(s.error_code(), c.want) << c.name << ": " << s.error_message();
    EXPECT_FALSE(s.error_message().empty()) << c.name;
  }
  auto health = grpc::health::v1::Health::NewStub(daemon_->UnixChannel());
  grpc::health::v1::HealthCheckResponse hr;
  auto ctx = Ctx("");
  ASSERT_TRUE(health->Check(ctx.get(), {}, &hr).ok());
  EXPECT_EQ(hr.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(Info(pool_.get()).free_bytes(), free_before);
  std::printf("%zu bad requests answered with their status codes\n",
              cases.size());
}

TEST_F(ServerTest, SigtermEndsWaitersAndExitsPromptly) {
  Got all = Allocate(pool_.get(), kAlice, Bytes(kTotal));
  ASSERT_TRUE(all.status.ok());
  grpc::Status waited;
  std::thread waiter([&] {
    auto pool = daemon_->Pool();
    AllocateRequest req = Bytes(4096);
    req.set_may_wait(true);
    waited = Allocate(pool.get(), kBob, req, 30).status;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(daemon_->Stop(), 0);
  const auto took = std::chrono::steady_clock::now() - t0;
  std::printf(
      "SIGTERM to exit with a waiter: %lld ms\n",
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  EXPECT_LT(took, std::chrono::seconds(5));  // generous: shared machines
  waiter.join();
  // In flight: answered, and retryable.
  EXPECT_EQ(waited.error_code(), grpc::StatusCode::UNAVAILABLE)
      << waited.error_message();
  EXPECT_THAT(waited.error_message(), HasSubstr("shutting down"));
}

// A CA, a server certificate for 127.0.0.1, and client certificates.
std::string MakeCertificates() {
  char tmpl[] = "/tmp/physpool-tls-XXXXXX";
  EXPECT_NE(mkdtemp(tmpl), nullptr);
  const std::string d = tmpl;
  const std::string script = absl::StrCat(
      "set -e; cd ", d, "\n",
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt "
      "-days 2 "
      "-subj /CN=physpool-test-ca\n",
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext\n",
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
      "-subj /CN=localhost\n",
      "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key "
      "-CAcreateserial "
      "-out server.crt -days 2 -extfile san.ext\n",
      "for cn in alice.example nobody.example; do\n",
      "  openssl req -newkey rsa:2048 -nodes -keyout $cn.key -out $cn.csr "
      "-subj /CN=$cn\n",
      "  openssl x509 -req -in $cn.csr -CA ca.crt -CAkey ca.key "
      "-CAcreateserial "
      "-out $cn.crt -days 2\n",
      "done\n");
  const RunResult r = RunCommand("bash -c '" + script + "'");
  EXPECT_EQ(r.code, 0) << r.output;
  return d;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ServerTlsTest, ClientCertificatesIdentifyTenants) {
  const std::string certs = MakeCertificates();
  DaemonOptions o;
  o.tls_dir = certs;
  auto d = Daemon::Start(o);
  ASSERT_TRUE(d.ok()) << d.status();
  auto channel_for = [&](const std::string& cn) {
    grpc::SslCredentialsOptions opts;
    opts.pem_root_certs = Slurp(certs + "/ca.crt");
    if (!cn.empty()) {
      opts.pem_private_key = Slurp(certs + "/" + cn + ".key");
      opts.pem_cert_chain = Slurp(certs + "/" + cn + ".crt");
    }
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*d)->tcp_port()),
                               grpc::SslCredentials(opts));
  };
  auto alice = v1::Pool::NewStub(channel_for("alice.example"));
  v1::GetPoolInfoResponse info;
  auto ctx = Ctx("", 10);
  const grpc::Status ok = alice->GetPoolInfo(ctx.get(), {}, &info);
  ASSERT_TRUE(ok.ok()) << ok.error_message() << "\n" << (*d)->Log();
  EXPECT_EQ(info.tenant(), "alice");
  // A valid certificate that names no tenant.
  auto nobody = v1::Pool::NewStub(channel_for("nobody.example"));
  ctx = Ctx("", 10);
  const grpc::Status unknown = nobody->GetPoolInfo(ctx.get(), {}, &info);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(unknown.error_message(), HasSubstr("names no tenant"));
  // No client certificate: the handshake fails.
  auto anonymous = v1::Pool::NewStub(channel_for(""));
  ctx = Ctx("", 3);
  EXPECT_FALSE(anonymous->GetPoolInfo(ctx.get(), {}, &info).ok());
  // A bearer token still works over TLS.
  ctx = Ctx(kBob, 10);
  ASSERT_TRUE(nobody->GetPoolInfo(ctx.get(), {}, &info).ok());
  EXPECT_EQ(info.tenant(), "bob");
  RunCommand("rm -rf " + certs);
}

TEST(ServerStartTest, RefusesBadConfigAndInsecureRemoteTcp) {
  char tmpl[] = "/tmp/physpool-cfg-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    std::ofstream(dir + "/bad.yaml")
        << "listen:\n  unix: /tmp/x.sock\nleases:\n  colour: red\n";
  }
  RunResult r = RunCommand(std::string(PHYSPOOLD_PATH) + " --config " + dir +
                           "/bad.yaml");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("bad.yaml:4: leases.colour: unknown key"));
  {
    std::ofstream(dir + "/ttl.yaml") << "leases:\n  default_ttl_seconds: -3\n";
  }
  r = RunCommand(std::string(PHYSPOOLD_PATH) + " --config " + dir +
                 "/ttl.yaml");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("ttl.yaml:2: leases.default_ttl_seconds"));
  // The embedded default's implicit tenant (no authentication, admin)
  // never listens off loopback, whatever the flags.
  r = RunCommand(std::string(PHYSPOOLD_PATH) +
                 " --unix '' --metrics '' --sim-dir " + dir +
                 "/sim --tcp 0.0.0.0:0 --insecure-tcp");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("the implicit tenant"));
  {
    std::ofstream(dir + "/remote.yaml")
        << "listen:\n  unix: ''\n  tcp: 0.0.0.0:0\nmetrics:\n  listen: ''\n"
        << "source:\n  sim:\n    dir: " << dir << "/sim\n"
        << "tenants:\n  - {name: a, token_sha256: [" << std::string(64, 'a')
        << "]}\n";
  }
  r = RunCommand(std::string(PHYSPOOLD_PATH) + " --config " + dir +
                 "/remote.yaml");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("refusing TCP off loopback without TLS"));
  r = RunCommand(std::string(PHYSPOOLD_PATH) + " --bogus");
  EXPECT_EQ(r.code, 2);
  RunCommand("rm -rf " + dir);
}

}  // namespace
}  // namespace physpool::testing
