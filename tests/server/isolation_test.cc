// SPDX-License-Identifier: Apache-2.0
// Tenant isolation, CPU side (issue 12), against the real daemon (sim
// source): what a tenant is handed maps its own lease and nothing else,
// and the memory of an ended lease its tenant still maps (or holds a
// descriptor of) reaches nobody else until it is let go: the quarantine,
// seen in GetPoolInfo, the metrics, Admin.GetLease and physpoolctl.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kTotal = 24 * kMiB;  // the harness's two segments

class IsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DaemonOptions o;
    o.default_ttl_seconds = 30;
    o.max_wait_ms = 1500;  // waits end on the daemon's side, with a reason
    // Scans every 100 ms while something stays held (a lease's end scans
    // at once).
    o.extra_yaml = "isolation:\n  mode: required\n  scan_interval_ms: 100\n";
    auto d = Daemon::Start(o);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    pool_ = daemon_->Pool();
    admin_ = daemon_->Admin();
  }

  absl::StatusOr<v1::Lease> Allocate(const std::string& token, uint64_t bytes,
                                     bool wait = false, double seconds = 10,
                                     bool preemptible = false,
                                     bool reclaim = false) {
    v1::AllocateRequest req;
    req.set_bytes(bytes);
    req.set_may_wait(wait);
    req.set_preemptible(preemptible);
    req.set_may_reclaim(reclaim);
    v1::AllocateResponse resp;
    auto ctx = Ctx(token, seconds);
    grpc::Status s = pool_->Allocate(ctx.get(), req, &resp);
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          s.error_message());
    }
    return resp.lease();
  }
  grpc::Status Release(const std::string& token, const std::string& id) {
    v1::ReleaseRequest req;
    req.set_lease_id(id);
    v1::ReleaseResponse resp;
    auto ctx = Ctx(token);
    return pool_->Release(ctx.get(), req, &resp);
  }
  v1::GetPoolInfoResponse Info() {
    v1::GetPoolInfoResponse info;
    auto ctx = Ctx(kRoot);
    EXPECT_TRUE(pool_->GetPoolInfo(ctx.get(), {}, &info).ok());
    return info;
  }
  // Waits (up to 10 s) until a scan has found who holds ended lease `id`.
  v1::Lease AwaitHeld(const std::string& id) {
    v1::GetLeaseResponse resp;
    for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end;
         absl::SleepFor(absl::Milliseconds(20))) {
      v1::GetLeaseRequest req;
      req.set_lease_id(id);
      auto ctx = Ctx(kOps);
      resp.Clear();
      if (admin_->GetLease(ctx.get(), req, &resp).ok() &&
          resp.lease().quarantine().holders_size() > 0)
        break;
    }
    return resp.lease();
  }
  // Waits (up to 10 s) for the quarantine to hold `bytes`.
  bool AwaitQuarantined(uint64_t bytes) {
    for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end;
         absl::SleepFor(absl::Milliseconds(20))) {
      if (Info().quarantined_bytes() == bytes) return true;
    }
    return false;
  }
  std::string Ctl(const std::string& args) {
    return RunCommand(absl::StrCat(PHYSPOOLCTL_PATH,
                                   " --endpoint unix:", daemon_->socket(),
                                   " --token ", kRoot, " ", args))
        .output;
  }
  std::string Metrics() {
    return physpool::testing::Metrics(daemon_->metrics_port());
  }
  static bool Overlap(const v1::Lease& a, const v1::Lease& b) {
    for (const auto& x : a.runs())
      for (const auto& y : b.runs())
        if (x.iova() < y.iova() + y.length() &&
            y.iova() < x.iova() + x.length())
          return true;
    return false;
  }

  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<v1::Pool::Stub> pool_;
  std::unique_ptr<v1::Admin::Stub> admin_;
};

TEST_F(IsolationTest, NothingAnotherTenantIsHandedContainsAsPattern) {
  auto a = Allocate(kAlice, 3 * kMiB);
  ASSERT_TRUE(a.ok()) << a.status();
  std::mt19937_64 rng(std::random_device{}());
  std::string pattern(64, '\0');
  for (char& c : pattern) c = static_cast<char>(rng());
  {
    auto view = MapView(*daemon_, a->id(), kAlice);
    ASSERT_TRUE(view.ok()) << view.status();
    ASSERT_EQ((*view)->bytes, a->bytes());  // the lease, nothing more
    for (uint64_t off = 0; off + 64 <= (*view)->bytes; off += 4096)
      std::memcpy((*view)->base + off, pattern.data(), 64);
  }
  // Bob: the rest of the pool. Everything he is handed, read end to end.
  auto b = Allocate(kBob, kTotal - 3 * kMiB);
  ASSERT_TRUE(b.ok()) << b.status();
  auto got = FdSocketRequest(daemon_->socket() + ".fds",
                             "backing " + b->id() + " " + kBob);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->second.size(), 1u);
  for (int fd : got->second) {
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), b->bytes());
    std::string all(st.st_size, '\0');
    ASSERT_EQ(pread(fd, all.data(), all.size(), 0),
              static_cast<ssize_t>(all.size()));
    EXPECT_EQ(all.find(pattern), std::string::npos);
    close(fd);
  }
  for (const auto& r : b->runs()) EXPECT_EQ(r.backing_path(), "");
  const v1::GetPoolInfoResponse admin_info = Info();  // root: an admin
  for (const auto& s : admin_info.segments()) EXPECT_NE(s.backing_path(), "");
  // Bob asking for Alice's lease gets nothing.
  EXPECT_EQ(FdSocketRequest(daemon_->socket() + ".fds",
                            "backing " + a->id() + " " + kBob)
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(IsolationTest, AnEndedLeaseStillMappedReachesNobodyUntilUnmapped) {
  auto a = Allocate(kAlice, kTotal);  // the whole pool
  ASSERT_TRUE(a.ok()) << a.status();
  auto view = MapView(*daemon_, a->id(), kAlice);
  ASSERT_TRUE(view.ok()) << view.status();
  std::memset((*view)->base, 0x5a, (*view)->bytes);
  // Released while still mapped: quarantined.
  ASSERT_TRUE(Release(kAlice, a->id()).ok());
  ASSERT_TRUE(AwaitQuarantined(kTotal)) << Info().DebugString();
  EXPECT_EQ(Info().quarantined_leases(), 1u);
  const v1::Lease held = AwaitHeld(a->id());
  // An admin: the lease with its holders (this process, which maps it).
  ASSERT_TRUE(held.has_quarantine());
  ASSERT_EQ(held.quarantine().holders_size(), 1) << held.DebugString();
  EXPECT_EQ(held.quarantine().holders(0).pid(), getpid());
  EXPECT_TRUE(held.quarantine().holders(0).mapped());
  EXPECT_NE(held.runs(0).backing_path(), "");  // the Admin view
  // The owner: NOT_FOUND, saying why the memory is not back and who holds it.
  {
    v1::GetLeaseRequest req;
    req.set_lease_id(a->id());
    v1::GetLeaseResponse resp;
    auto ctx = Ctx(kAlice);
    grpc::Status s = pool_->GetLease(ctx.get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(s.error_message(), HasSubstr("quarantined"));
    EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat("pid ", getpid())));
  }
  const std::string get = Ctl("lease get " + a->id());
  EXPECT_THAT(get, HasSubstr("QUARANTINED"));
  EXPECT_THAT(get, HasSubstr(absl::StrCat("held by pid ", getpid())));
  EXPECT_THAT(Ctl("pool status"),
              HasSubstr("quarantined 24 MiB in 1 ended lease"));
  const std::string m = Metrics();
  EXPECT_THAT(m,
              HasSubstr(absl::StrCat("physpool_quarantined_bytes ", kTotal)));
  EXPECT_THAT(m, HasSubstr("physpool_quarantined_leases 1"));
  EXPECT_THAT(m, HasSubstr("physpool_isolation 1"));
  EXPECT_THAT(daemon_->Log(), HasSubstr("its memory is quarantined"));
  // Bob waits; none of those pages comes to him while Alice maps them.
  auto b = Allocate(kBob, 4096, /*wait=*/true, /*seconds=*/8);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kDeadlineExceeded)
      << b.status();
  // Alice unmaps: the memory comes back, zeroed, and Bob gets it.
  view->reset();
  auto b2 = Allocate(kBob, kTotal, /*wait=*/true, /*seconds=*/10);
  ASSERT_TRUE(b2.ok()) << b2.status();
  EXPECT_TRUE(Overlap(*a, *b2));
  EXPECT_EQ(Info().quarantined_bytes(), 0u);
  auto bview = MapView(*daemon_, b2->id(), kBob);
  ASSERT_TRUE(bview.ok()) << bview.status();
  size_t nonzero = 0;
  for (uint64_t i = 0; i < (*bview)->bytes; ++i)
    nonzero += (*bview)->base[i] != 0;
  EXPECT_EQ(nonzero, 0u);
}

TEST_F(IsolationTest, ADescriptorAloneHoldsTooAndCountsAgainstTheQuota) {
  // Carol: 2 leases, 1 MiB.
  auto a = Allocate(kCarol, kMiB);
  ASSERT_TRUE(a.ok()) << a.status();
  auto got = FdSocketRequest(daemon_->socket() + ".fds",
                             "backing " + a->id() + " " + kCarol);
  ASSERT_TRUE(got.ok()) << got.status();
  const int fd = got->second.at(0);  // kept, never mapped
  ASSERT_TRUE(Release(kCarol, a->id()).ok());
  ASSERT_TRUE(AwaitQuarantined(kMiB));
  // The ended lease's memory is still Carol's: her quota is used up.
  auto again = Allocate(kCarol, kMiB);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("quarantined"));
  close(fd);
  ASSERT_TRUE(AwaitQuarantined(0));
  EXPECT_TRUE(Allocate(kCarol, kMiB).ok());
}

TEST_F(IsolationTest, ExpiryAndPreemptionWaitForTheViewToBeLetGo) {
  // Alice's preemptible lease of the whole pool, mapped.
  auto a = Allocate(kAlice, kTotal, false, 10, /*preemptible=*/true);
  ASSERT_TRUE(a.ok()) << a.status();
  auto view = MapView(*daemon_, a->id(), kAlice);
  ASSERT_TRUE(view.ok()) << view.status();
  // Bob reclaims it: Alice's lease ends at once, but the window is not his
  // while she maps it; his deadline passes saying why.
  auto b = Allocate(kBob, kMiB, /*wait=*/false, /*seconds=*/8, false,
                    /*reclaim=*/true);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kDeadlineExceeded)
      << b.status();
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("quarantined"));
  EXPECT_EQ(Info().quarantined_bytes(), kTotal);
  view->reset();
  ASSERT_TRUE(AwaitQuarantined(0));
  auto b2 = Allocate(kBob, kMiB, /*wait=*/true);
  ASSERT_TRUE(b2.ok()) << b2.status();
  EXPECT_TRUE(Overlap(*a, *b2));
}

TEST(IsolationRestartTest, AQuarantineSurvivesAKill9) {
  DaemonOptions o;
  o.default_ttl_seconds = 2;
  o.extra_yaml = "isolation:\n  scan_interval_ms: 100\n";
  auto d = Daemon::Start(o);
  ASSERT_TRUE(d.ok()) << d.status();
  auto pool = (*d)->Pool();
  v1::AllocateRequest req;
  req.set_bytes(kTotal);
  v1::AllocateResponse resp;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->Allocate(ctx.get(), req, &resp).ok());
  auto view = MapView(**d, resp.lease().id(), kAlice);
  ASSERT_TRUE(view.ok()) << view.status();
  // It expires (no renewal) while mapped, then the daemon dies.
  v1::GetPoolInfoResponse info;
  for (absl::Time end = absl::Now() + absl::Seconds(10);
       info.quarantined_bytes() != kTotal && absl::Now() < end;
       absl::SleepFor(absl::Milliseconds(50))) {
    auto c = Ctx(kRoot);
    (void)(*d)->Pool()->GetPoolInfo(c.get(), {}, &info);
  }
  ASSERT_EQ(info.quarantined_bytes(), kTotal);
  (*d)->Kill();
  ASSERT_TRUE((*d)->Restart().ok()) << (*d)->Log();
  // Still quarantined after the restart; nobody gets the pages.
  v1::AllocateRequest small;
  small.set_bytes(4096);
  small.set_may_wait(true);
  v1::AllocateResponse none;
  auto c1 = Ctx(kBob, 1.5);
  grpc::Status s = (*d)->Pool()->Allocate(c1.get(), small, &none);
  for (int i = 0; i < 5 && s.error_code() == grpc::StatusCode::UNAVAILABLE;
       ++i) {  // the killed daemon's cached connection
    c1 = Ctx(kBob, 1.5);
    s = (*d)->Pool()->Allocate(c1.get(), small, &none);
  }
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << s.error_message();
  // ... and it is still Alice's: with a quota of the pool, she has no room.
  {
    v1::SetTenantLimitsRequest lim;
    lim.set_tenant("alice");
    lim.mutable_limits()->set_max_bytes(kTotal);
    v1::SetTenantLimitsResponse set;
    auto c = Ctx(kRoot);
    ASSERT_TRUE((*d)->Admin()->SetTenantLimits(c.get(), lim, &set).ok());
    v1::AllocateRequest one;
    one.set_bytes(4096);
    auto ca = Ctx(kAlice);
    const grpc::Status q = (*d)->Pool()->Allocate(ca.get(), one, &none);
    EXPECT_EQ(q.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << q.error_message();
    EXPECT_THAT(q.error_message(), HasSubstr("quarantined"));
  }
  view->reset();
  auto c2 = Ctx(kBob, 10);
  req.set_may_wait(true);
  ASSERT_TRUE((*d)->Pool()->Allocate(c2.get(), req, &resp).ok()) << (*d)->Log();
}

}  // namespace
}  // namespace physpool::testing
