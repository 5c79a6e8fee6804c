// SPDX-License-Identifier: Apache-2.0
// The client library against the real daemon.
#include "physpool/client.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/fd_socket.h"
#include "gtest/gtest.h"
#include "physpool/physpool.h"
#include "tests/client/fake_pool.h"
#include "tests/client/socket_proxy.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

bool IsRequestId(const std::string& id) {
  return id.size() == 32 &&
         id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// The leases the daemon holds for `tenant` (admin view).
std::vector<v1::Lease> LeasesOf(const Daemon& d, const std::string& tenant) {
  v1::AdminListLeasesRequest req;
  req.set_tenant(tenant);
  std::vector<v1::Lease> out;
  for (;;) {
    v1::ListLeasesResponse resp;
    auto ctx = Ctx(kRoot);
    const grpc::Status s = d.Admin()->ListLeases(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) return out;
    out.insert(out.end(), resp.leases().begin(), resp.leases().end());
    if (resp.next_page_token().empty()) return out;
    req.set_page_token(resp.next_page_token());
  }
}

// Waits (up to 10 s) until the daemon holds `count` leases for `tenant`.
std::vector<v1::Lease> AwaitLeases(const Daemon& d, const std::string& tenant,
                                   size_t count) {
  const absl::Time until = absl::Now() + absl::Seconds(10);
  std::vector<v1::Lease> leases = LeasesOf(d, tenant);
  while (leases.size() != count && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(10));
    leases = LeasesOf(d, tenant);
  }
  return leases;
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DaemonOptions o;
    o.default_ttl_seconds = 2;
    auto d = Daemon::Start(o);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
  }
  std::unique_ptr<Client> Connect(const std::string& token) {
    ClientOptions o;
    o.endpoint = "unix:" + daemon_->socket();
    o.token = token;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }
  grpc::StatusCode LeaseStatus(const std::string& id,
                               const std::string& token) {
    auto pool = daemon_->Pool();
    v1::GetLeaseRequest req;
    req.set_lease_id(id);
    v1::GetLeaseResponse resp;
    auto ctx = Ctx(token);
    return pool->GetLease(ctx.get(), req, &resp).error_code();
  }
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(ClientTest, BytesWrittenThroughThePointerAreSeenByAnotherProcess) {
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->tenant(), "alice");
  AllocateOptions o;
  o.bytes = 3 * 1024 * 1024 + 5;
  o.alignment = 1 << 16;
  auto region = client->Allocate(o);
  ASSERT_TRUE(region.ok()) << region.status();
  ASSERT_FALSE((*region)->runs().empty());
  for (const auto& run : (*region)->runs()) {
    EXPECT_EQ(run.iova % (1 << 16), 0u);
    for (uint64_t i = 0; i < run.bytes; ++i) {
      static_cast<uint8_t*>(run.cpu)[i] = static_cast<uint8_t>(run.iova + i);
    }
  }
  // Another process reads the lease's backing files (found through the API).
  auto pool = daemon_->Pool();
  v1::GetLeaseRequest req;
  req.set_lease_id((*region)->lease_id());
  v1::GetLeaseResponse lease;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->GetLease(ctx.get(), req, &lease).ok());
  // The lease's own view, from the fd socket, in another process.
  const std::string fd_socket = daemon_->socket() + ".fds";
  const pid_t child = fork();
  if (child == 0) {
    auto view = client_internal::FdRequest(
        fd_socket, "backing " + lease.lease().id() + " " + kAlice,
        absl::Seconds(10));
    if (!view.ok() || view->fds.size() != 1) _exit(2);
    for (const auto& run : lease.lease().runs()) {
      if (!run.backing_path().empty()) _exit(3);  // tenants get no paths
      std::vector<uint8_t> got(run.length());
      if (pread(view->fds[0], got.data(), got.size(),
                static_cast<off_t>(run.view_offset())) !=
          static_cast<ssize_t>(got.size()))
        _exit(4);
      for (uint64_t i = 0; i < run.length(); ++i) {
        if (got[i] != static_cast<uint8_t>(run.iova() + i)) _exit(1);
      }
    }
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // Destruction releases the lease.
  const std::string id = (*region)->lease_id();
  region->reset();
  EXPECT_EQ(LeaseStatus(id, kAlice), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ClientTest, BackgroundRenewalKeepsTheLeasePastItsTtl) {
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  AllocateOptions o;
  o.bytes = 4096;  // TTL: the daemon's default, 2 s
  auto region = client->Allocate(o);
  ASSERT_TRUE(region.ok()) << region.status();
  std::this_thread::sleep_for(std::chrono::seconds(5));
  EXPECT_EQ(LeaseStatus((*region)->lease_id(), kAlice), grpc::StatusCode::OK);
  EXPECT_FALSE((*region)->revoked());
  // Without the client (its renewal gone), the lease expires.
  const std::string id = (*region)->lease_id();
  Region* orphan = region->release();  // as if the process had died
  client.reset();
  std::this_thread::sleep_for(std::chrono::seconds(4));
  EXPECT_EQ(LeaseStatus(id, kAlice), grpc::StatusCode::NOT_FOUND);
  delete orphan;  // its Release finds the lease gone; it unmaps
}

TEST_F(ClientTest, RevocationReachesTheCallback) {
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  absl::Mutex mu;
  std::string kind, reason;
  AllocateOptions o;
  o.bytes = 1 << 20;
  o.ttl = std::chrono::seconds(60);
  auto region =
      client->Allocate(o, [&](const std::string&, const std::string& k,
                              const std::string& r, int64_t) {
        absl::MutexLock l(&mu);
        kind = k;
        reason = r;
      });
  ASSERT_TRUE(region.ok()) << region.status();
  auto admin = daemon_->Admin();
  v1::RevokeLeaseRequest req;
  req.set_lease_id((*region)->lease_id());
  req.set_reason("device reset");
  v1::RevokeLeaseResponse resp;
  auto ctx = Ctx(kRoot);
  ASSERT_TRUE(admin->RevokeLease(ctx.get(), req, &resp).ok());
  absl::MutexLock l(&mu);
  ASSERT_TRUE(mu.AwaitWithTimeout(
      absl::Condition(
          +[](std::string* k) { return !k->empty(); }, &kind),
      absl::Seconds(10)));
  EXPECT_EQ(kind, "revoked");
  EXPECT_EQ(reason, "device reset");
  EXPECT_TRUE((*region)->revoked());
}

// Releasing an attached view of one's own lease (same Client) only
// unmaps it: the owner's region is still renewed and watched.
TEST_F(ClientTest, ReleasingAnAttachedViewKeepsTheOwnersRegionWatched) {
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  absl::Mutex mu;
  std::string kind;
  AllocateOptions o;
  o.bytes = 1 << 20;
  auto region =
      client->Allocate(o, [&](const std::string&, const std::string& k,
                              const std::string&, int64_t) {
        absl::MutexLock l(&mu);
        kind = k;
      });
  ASSERT_TRUE(region.ok()) << region.status();
  {
    auto view = client->Attach((*region)->lease_id());
    ASSERT_TRUE(view.ok()) << view.status();
    ASSERT_TRUE((*view)->Release().ok());
  }
  EXPECT_EQ(LeaseStatus((*region)->lease_id(), kAlice), grpc::StatusCode::OK);
  auto admin = daemon_->Admin();
  v1::RevokeLeaseRequest req;
  req.set_lease_id((*region)->lease_id());
  v1::RevokeLeaseResponse resp;
  auto ctx = Ctx(kRoot);
  ASSERT_TRUE(admin->RevokeLease(ctx.get(), req, &resp).ok());
  absl::MutexLock l(&mu);
  EXPECT_TRUE(mu.AwaitWithTimeout(
      absl::Condition(
          +[](std::string* k) { return !k->empty(); }, &kind),
      absl::Seconds(10)))
      << "the owner's callback did not run: the view's release dropped it";
  EXPECT_EQ(kind, "revoked");
}

TEST_F(ClientTest, ErrorsCarryTheDaemonsStatus) {
  ClientOptions bad;
  bad.endpoint = "unix:" + daemon_->socket();
  bad.token = "nope";
  EXPECT_EQ(Client::Connect(bad).status().code(),
            absl::StatusCode::kUnauthenticated);
  bad.endpoint = "unix:/nonexistent/physpool.sock";
  bad.timeout = std::chrono::milliseconds(500);
  EXPECT_EQ(Client::Connect(bad).status().code(),
            absl::StatusCode::kUnavailable);
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  AllocateOptions o;
  o.bytes = 1ull << 40;
  EXPECT_EQ(client->Allocate(o).status().code(),
            absl::StatusCode::kResourceExhausted);
}

// The daemon restarts as after a host reboot (another boot id): the leases
// are void, and no Watch stream was there to hear it. On reconnecting, the
// client compares its regions with the daemon's list and reports the
// missing one as lost at once (renewal, a third of the 60 s TTL later,
// would be the next to notice). The same path handles an OVERFLOW event.
TEST(ClientReconnectTest, ALeaseThatEndedUnseenIsReportedLostOnReconnect) {
  char tmpl[] = "/tmp/physpool-boot-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string boot = std::string(tmpl) + "/boot_id";
  std::ofstream(boot) << "boot-1\n";
  DaemonOptions opts;
  opts.boot_id_file = boot;
  auto daemon = Daemon::Start(opts);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  ClientOptions co;
  co.endpoint = "unix:" + (*daemon)->socket();
  co.token = kAlice;
  auto client = Client::Connect(co);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::Mutex mu;
  std::string kind, reason;
  AllocateOptions o;
  o.bytes = 4096;
  o.ttl = std::chrono::seconds(60);
  auto region =
      (*client)->Allocate(o, [&](const std::string&, const std::string& k,
                                 const std::string& r, int64_t) {
        absl::MutexLock l(&mu);
        kind = k;
        reason = r;
      });
  ASSERT_TRUE(region.ok()) << region.status();
  (*daemon)->Kill();
  std::ofstream(boot) << "boot-2\n";
  ASSERT_TRUE((*daemon)->Restart().ok());
  {
    absl::MutexLock l(&mu);
    EXPECT_TRUE(mu.AwaitWithTimeout(
        absl::Condition(
            +[](std::string* k) { return !k->empty(); }, &kind),
        absl::Seconds(15)));
    EXPECT_EQ(kind, "lost");
    EXPECT_NE(reason.find("the watch stream was interrupted"),
              std::string::npos)
        << reason;
  }
  EXPECT_TRUE((*region)->revoked());
  region->reset();
  client->reset();
  daemon->reset();
  RunCommand(std::string("rm -rf ") + tmpl);
}

// --- Request ids and retries ------------------------------------------------

// Every logical Allocate has its own request id; the daemon records it on
// the lease, and a raw retry with that id and the same request gets the
// same lease. Needs the daemon's request ids (issue 11 server side).
TEST_F(ClientTest, TheLibrarysRequestIdIsTheLeasesAndARetryGetsTheSameLease) {
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  AllocateOptions o;
  o.bytes = 65536;
  o.label = "rid";
  auto first = client->Allocate(o);
  auto second = client->Allocate(o);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  const std::string id = (*first)->request_id();
  EXPECT_TRUE(IsRequestId(id)) << id;
  EXPECT_TRUE(IsRequestId((*second)->request_id()));
  EXPECT_NE(id, (*second)->request_id());

  auto pool = daemon_->Pool();
  v1::GetLeaseRequest get;
  get.set_lease_id((*first)->lease_id());
  v1::GetLeaseResponse got;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->GetLease(ctx.get(), get, &got).ok());
  EXPECT_EQ(got.lease().request_id(), id);

  // What the library sent, again, with its request id.
  v1::AllocateRequest retry;
  retry.set_bytes(o.bytes);
  retry.set_label(o.label);
  retry.set_request_id(id);
  v1::AllocateResponse again;
  ctx = Ctx(kAlice);
  grpc::Status s = pool->Allocate(ctx.get(), retry, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(again.lease().id(), (*first)->lease_id());
  EXPECT_EQ(LeasesOf(*daemon_, "alice").size(), 2u);
  // The same id with other parameters is not a retry.
  retry.set_bytes(2 * o.bytes);
  ctx = Ctx(kAlice);
  EXPECT_EQ(pool->Allocate(ctx.get(), retry, &again).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // Once the lease has ended, its id answers FAILED_PRECONDITION.
  retry.set_bytes(o.bytes);
  first->reset();
  ctx = Ctx(kAlice);
  EXPECT_EQ(pool->Allocate(ctx.get(), retry, &again).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

class RetryTest : public ClientTest {
 protected:
  void SetUp() override {
    ClientTest::SetUp();
    if (HasFatalFailure()) return;
    auto p =
        SocketProxy::Start(daemon_->dir() + "/proxy.sock", daemon_->socket());
    ASSERT_TRUE(p.ok()) << p.status();
    proxy_ = *std::move(p);
  }
  void TearDown() override { proxy_.reset(); }
  // A client of alice's through the proxy: 1 s per attempt, short pauses;
  // `on_retry` runs before each retry.
  std::unique_ptr<Client> ConnectThroughProxy(
      std::function<void(const AllocateRetry&)> on_retry) {
    ClientOptions o;
    o.endpoint = proxy_->endpoint();
    o.token = kAlice;
    o.timeout = std::chrono::milliseconds(1000);
    o.retry_backoff = std::chrono::milliseconds(50);
    o.on_allocate_retry = std::move(on_retry);
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }
  std::unique_ptr<SocketProxy> proxy_;
};

// The daemon serves the first attempt but its answer is lost: the retry
// (same request id) gets that lease, not a second one. Needs the daemon's
// request ids (issue 11 server side).
TEST_F(RetryTest, RetryAfterALostAnswerGetsTheSameLease) {
  std::vector<AllocateRetry> retries;
  std::string served;
  auto client = ConnectThroughProxy([&](const AllocateRetry& r) {
    retries.push_back(r);
    if (retries.size() > 1) return;
    // The first attempt was served: the daemon holds the lease.
    auto leases = AwaitLeases(*daemon_, "alice", 1);
    ASSERT_EQ(leases.size(), 1u);
    served = leases[0].id();
    proxy_->CutAll();
    proxy_->DropAnswers(false);
  });
  ASSERT_NE(client, nullptr);
  AllocateOptions o;
  o.bytes = 65536;
  proxy_->DropAnswers(true);
  auto region = client->Allocate(o);
  ASSERT_TRUE(region.ok()) << region.status();
  ASSERT_GE(retries.size(), 1u);
  EXPECT_EQ(retries[0].attempt, 1);
  EXPECT_EQ(retries[0].error.code(), absl::StatusCode::kDeadlineExceeded);
  for (const AllocateRetry& r : retries) {
    EXPECT_EQ(r.request_id, (*region)->request_id());
  }
  EXPECT_EQ((*region)->lease_id(), served);
  EXPECT_EQ(LeasesOf(*daemon_, "alice").size(), 1u);
}

// As above, and the daemon is killed (SIGKILL) and restarted between the
// attempts: the request id survives in its store. Needs the daemon's
// request ids (issue 11 server side).
TEST_F(RetryTest, RetryAcrossADaemonKillGetsTheSameLease) {
  std::vector<AllocateRetry> retries;
  std::string served;
  auto client = ConnectThroughProxy([&](const AllocateRetry& r) {
    retries.push_back(r);
    if (retries.size() > 1) return;
    auto leases = AwaitLeases(*daemon_, "alice", 1);
    ASSERT_EQ(leases.size(), 1u);
    served = leases[0].id();
    daemon_->Kill();
    proxy_->CutAll();
    proxy_->DropAnswers(false);
    ASSERT_TRUE(daemon_->Restart().ok());
  });
  ASSERT_NE(client, nullptr);
  AllocateOptions o;
  o.bytes = 65536;
  o.max_segments = 1;
  proxy_->DropAnswers(true);
  auto region = client->Allocate(o);
  ASSERT_TRUE(region.ok()) << region.status();
  ASSERT_FALSE(retries.empty());
  EXPECT_EQ(retries[0].error.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ((*region)->lease_id(), served);
  const auto leases = LeasesOf(*daemon_, "alice");
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].id(), served);
  EXPECT_EQ(leases[0].request_id(), (*region)->request_id());
}

// The daemon is down when Allocate starts (UNAVAILABLE) and comes back
// before the retry: the call succeeds, every attempt with the same id.
TEST_F(ClientTest, AllocateRetriesUntilTheDaemonIsBack) {
  ClientOptions co;
  co.endpoint = "unix:" + daemon_->socket();
  co.token = kAlice;
  co.retry_backoff = std::chrono::milliseconds(100);
  std::vector<AllocateRetry> retries;
  co.on_allocate_retry = [&](const AllocateRetry& r) {
    retries.push_back(r);
    if (retries.size() == 1) {
      ASSERT_TRUE(daemon_->Restart().ok());
    }
  };
  auto c = Client::Connect(co);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(daemon_->Stop(), 0);
  AllocateOptions o;
  o.bytes = 4096;
  auto region = (*c)->Allocate(o);
  ASSERT_TRUE(region.ok()) << region.status();
  ASSERT_GE(retries.size(), 1u);
  for (const AllocateRetry& r : retries) {
    EXPECT_EQ(r.error.code(), absl::StatusCode::kUnavailable) << r.error;
    EXPECT_EQ(r.request_id, (*region)->request_id());
  }
  EXPECT_EQ(LeaseStatus((*region)->lease_id(), kAlice), grpc::StatusCode::OK);
  EXPECT_EQ(LeasesOf(*daemon_, "alice").size(), 1u);
}

// The library against a scripted server: exactly what each attempt
// carries, when it is retried and when not.
class FakeServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/physpool-fake-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto f = FakePool::Start(dir_);
    ASSERT_TRUE(f.ok()) << f.status();
    fake_ = *std::move(f);
  }
  void TearDown() override {
    fake_.reset();
    RunCommand("rm -rf " + dir_);
  }
  // 300 ms per attempt, 40 ms first pause; records the retries.
  std::unique_ptr<Client> Connect(int attempts = 5) {
    ClientOptions o;
    o.endpoint = fake_->endpoint();
    o.timeout = std::chrono::milliseconds(300);
    o.retry_backoff = std::chrono::milliseconds(40);
    o.allocate_attempts = attempts;
    o.on_allocate_retry = [this](const AllocateRetry& r) {
      absl::MutexLock l(&mu_);
      retries_.push_back(r);
    };
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }
  std::vector<AllocateRetry> retries() {
    absl::MutexLock l(&mu_);
    return retries_;
  }
  std::string dir_;
  std::unique_ptr<FakePool> fake_;
  absl::Mutex mu_;
  std::vector<AllocateRetry> retries_ ABSL_GUARDED_BY(mu_);
};

using Step = FakePool::Step;

TEST_F(FakeServerTest, RetriesCarryTheSameRequestIdEachWithItsOwnDeadline) {
  fake_->SetScript({Step::kUnavailable, Step::kHang, Step::kOk});
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  AllocateOptions o;
  o.bytes = 4096;
  auto region = client->Allocate(o);
  ASSERT_TRUE(region.ok()) << region.status();
  const auto attempts = fake_->attempts();
  ASSERT_EQ(attempts.size(), 3u);
  EXPECT_TRUE(IsRequestId(attempts[0].request_id)) << attempts[0].request_id;
  for (const auto& a : attempts) {
    EXPECT_EQ(a.request_id, attempts[0].request_id);
    EXPECT_FALSE(a.may_wait);
    // Its own deadline: `timeout` from when it was sent.
    EXPECT_LE(a.deadline_left, absl::Milliseconds(300 + 25));  // rounding
    EXPECT_GT(a.deadline_left, absl::Milliseconds(200));
  }
  EXPECT_EQ((*region)->request_id(), attempts[0].request_id);
  const auto r = retries();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].attempt, 1);
  EXPECT_EQ(r[0].error.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r[1].attempt, 2);
  EXPECT_EQ(r[1].error.code(), absl::StatusCode::kDeadlineExceeded);
  // Exponential pauses with jitter in [0.5, 1] of 40 ms, 80 ms.
  EXPECT_GE(r[0].pause, std::chrono::milliseconds(20));
  EXPECT_LE(r[0].pause, std::chrono::milliseconds(40));
  EXPECT_GE(r[1].pause, std::chrono::milliseconds(40));
  EXPECT_LE(r[1].pause, std::chrono::milliseconds(80));
}

TEST_F(FakeServerTest, EachAllocateHasItsOwnRequestId) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  AllocateOptions o;
  o.bytes = 4096;
  auto a = client->Allocate(o);
  auto b = client->Allocate(o);
  ASSERT_TRUE(a.ok() && b.ok());
  const auto attempts = fake_->attempts();
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_NE(attempts[0].request_id, attempts[1].request_id);
  EXPECT_TRUE(IsRequestId(attempts[1].request_id));
  EXPECT_TRUE(retries().empty());
}

TEST_F(FakeServerTest, GivesUpAfterItsAttemptsAndTheErrorSaysSo) {
  fake_->SetScript({Step::kUnavailable});
  auto client = Connect(/*attempts=*/4);
  ASSERT_NE(client, nullptr);
  AllocateOptions o;
  o.bytes = 4096;
  auto region = client->Allocate(o);
  EXPECT_EQ(region.status().code(), absl::StatusCode::kUnavailable);
  const auto attempts = fake_->attempts();
  ASSERT_EQ(attempts.size(), 4u);
  const std::string msg(region.status().message());
  EXPECT_NE(msg.find("fake: going away"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4 attempts"), std::string::npos) << msg;
  EXPECT_NE(msg.find(attempts[0].request_id), std::string::npos) << msg;
  EXPECT_EQ(retries().size(), 3u);
}

TEST_F(FakeServerTest, OtherErrorsAreNotRetried) {
  fake_->SetScript({Step::kNoMemory, Step::kOk});
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  AllocateOptions o;
  o.bytes = 4096;
  auto region = client->Allocate(o);
  EXPECT_EQ(region.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(region.status().message(), "fake: no memory");
  EXPECT_EQ(fake_->attempts().size(), 1u);
  EXPECT_TRUE(retries().empty());
}

// A waiting attempt's deadline is wait_timeout + timeout; its
// DEADLINE_EXCEEDED (the wait ran out) is final: the wait is not started
// over. UNAVAILABLE before it is retried.
TEST_F(FakeServerTest, AWaitingRequestIsNotWaitedTwice) {
  fake_->SetScript({Step::kUnavailable, Step::kHang, Step::kOk});
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  AllocateOptions o;
  o.bytes = 4096;
  o.wait_timeout = std::chrono::milliseconds(500);
  const absl::Time start = absl::Now();
  auto region = client->Allocate(o);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(region.status().code(), absl::StatusCode::kDeadlineExceeded)
      << region.status();
  const auto attempts = fake_->attempts();
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_TRUE(attempts[0].may_wait);
  EXPECT_GT(attempts[0].deadline_left, absl::Milliseconds(700));
  EXPECT_LE(attempts[0].deadline_left, absl::Milliseconds(800 + 25));
  // The whole call: one wait + timeout, plus the pauses (at most 40 + 80
  // + 160 + 320 ms).
  EXPECT_LT(took, absl::Milliseconds(800 + 600 + 300)) << took;
  EXPECT_NE(region.status().message().find("2 attempts"), std::string::npos)
      << region.status();
}

// Nothing answers: the whole call ends within attempts * timeout plus the
// pauses.
TEST_F(FakeServerTest, TheWholeRequestIsBounded) {
  fake_->SetScript({Step::kHang});
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  AllocateOptions o;
  o.bytes = 4096;
  const absl::Time start = absl::Now();
  auto region = client->Allocate(o);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(region.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(fake_->attempts().size(), 5u);
  EXPECT_GE(took, absl::Milliseconds(5 * 300));
  EXPECT_LT(took, absl::Milliseconds(5 * 300 + 600 + 300)) << took;
  EXPECT_NE(region.status().message().find("5 attempts"), std::string::npos)
      << region.status();
}

// The channel takes answers up to 8 MiB (the daemon's are at most 4 MiB;
// gRPC's default limit is 4 MiB) and sends requests up to 1 MiB.
TEST_F(FakeServerTest, MessageSizeLimitsAreSetExplicitly) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  fake_->SetScript({Step::kHugeAnswer});
  fake_->set_huge_bytes(6 << 20);
  AllocateOptions o;
  o.bytes = 4096;
  auto big = client->Allocate(o);
  EXPECT_TRUE(big.ok()) << big.status();
  fake_->set_huge_bytes(9 << 20);
  EXPECT_EQ(client->Allocate(o).status().code(),
            absl::StatusCode::kResourceExhausted);
  const size_t sent = fake_->attempts().size();
  o.label = std::string(2 << 20, 'y');  // a request over 1 MiB
  EXPECT_EQ(client->Allocate(o).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(fake_->attempts().size(), sent);  // it never left
}

TEST_F(ClientTest, CApi) {
  physpool_client* c = nullptr;
  ASSERT_EQ(physpool_connect(("unix:" + daemon_->socket()).c_str(), kBob, &c),
            0)
      << physpool_last_error();
  physpool_alloc_options o;
  std::memset(&o, 0, sizeof o);
  o.bytes = 2 << 20;
  physpool_region* r = nullptr;
  ASSERT_EQ(physpool_alloc(c, &o, nullptr, nullptr, &r), 0)
      << physpool_last_error();
  ASSERT_GE(physpool_region_run_count(r), 1u);
  physpool_run run = physpool_region_run(r, 0);
  std::memset(run.cpu, 1, run.bytes);
  EXPECT_EQ(physpool_region_revoked(r), 0);
  const std::string id = physpool_region_lease_id(r);
  physpool_region_free(r);
  EXPECT_EQ(LeaseStatus(id, kBob), grpc::StatusCode::NOT_FOUND);
  o.bytes = 1ull << 40;
  EXPECT_EQ(physpool_alloc(c, &o, nullptr, nullptr, &r),
            8);  // RESOURCE_EXHAUSTED
  EXPECT_NE(std::string(physpool_last_error()).find("never fits"),
            std::string::npos);
  physpool_disconnect(c);
  EXPECT_EQ(physpool_connect("unix:/nonexistent", "x", &c), 14);  // UNAVAILABLE
  // Every option: a token file, a timeout.
  const std::string token_file = daemon_->dir() + "/alice.token";
  std::ofstream(token_file) << kAlice;
  const std::string endpoint = "unix:" + daemon_->socket();
  physpool_connect_options co;
  std::memset(&co, 0, sizeof co);
  co.endpoint = endpoint.c_str();
  co.token_file = token_file.c_str();
  co.timeout_ms = 5000;
  EXPECT_EQ(physpool_connect_with(nullptr, &c), 3);
  ASSERT_EQ(physpool_connect_with(&co, &c), 0) << physpool_last_error();
  EXPECT_STREQ(physpool_client_tenant(c), "alice");
  EXPECT_EQ(physpool_client_page_size(c), 4096u);
  o.bytes = 5000;
  ASSERT_EQ(physpool_alloc(c, &o, nullptr, nullptr, &r), 0)
      << physpool_last_error();
  EXPECT_EQ(physpool_region_bytes(r), 8192u);
  EXPECT_TRUE(IsRequestId(physpool_region_request_id(r)));
  EXPECT_EQ(physpool_region_bytes(nullptr), 0u);
  EXPECT_STREQ(physpool_region_request_id(nullptr), "");
  physpool_region_free(r);
  physpool_disconnect(c);
  co.token_file = nullptr;
  co.token = "nope";
  EXPECT_EQ(physpool_connect_with(&co, &c), 16);  // UNAUTHENTICATED
}

// tests/client/c_api_test.c, compiled as C, against this daemon: NULL
// arguments, an out-of-range run, zero-initialised options.
TEST_F(ClientTest, CApiFromC) {
  auto admin = daemon_->Admin();
  v1::ListSegmentsResponse segs;
  auto ctx = Ctx(kRoot);
  ASSERT_TRUE(admin->ListSegments(ctx.get(), {}, &segs).ok());
  uint64_t low = 0, high = 0;
  for (const auto& s : segs.segments()) {
    if (s.numa_node() == 1) low = s.iova(), high = s.iova() + s.bytes();
  }
  ASSERT_NE(high, 0u);
  const RunResult r =
      RunCommand(absl::StrFormat("%s unix:%s %s %#x %#x", PHYSPOOL_C_API_TEST,
                                 daemon_->socket(), kBob, low, high));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("c_api_test: PASS"), std::string::npos) << r.output;
}

// The fd socket with the sim source: backing fds of one's own lease map
// the same memory as the lease's files; everything else is refused with
// the gRPC code the API would give.
TEST_F(ClientTest, FdSocketHandsOutBackingFdsOnlyToTheOwner) {
  auto alice = Connect(kAlice);
  ASSERT_NE(alice, nullptr);
  AllocateOptions o;
  o.bytes = 5 * 4096;
  o.max_segments = 1;
  auto region = alice->Allocate(o);
  ASSERT_TRUE(region.ok()) << region.status();
  const auto& run = (*region)->runs()[0];
  std::memset(run.cpu, 0x5a, run.bytes);

  auto pool = daemon_->Pool();
  v1::GetPoolInfoResponse info;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->GetPoolInfo(ctx.get(), {}, &info).ok());
  ASSERT_EQ(info.fd_socket(), daemon_->socket() + ".fds");
  const std::string id = (*region)->lease_id();
  auto answer = client_internal::FdRequest(
      info.fd_socket(), "backing " + id + " " + kAlice, absl::Seconds(5));
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->fds.size(), 1u);
  ASSERT_EQ(answer->words, (std::vector<std::string>{"1", "0:0"}));
  // The view is exactly the lease: nothing before or after it.
  struct stat st;
  ASSERT_EQ(fstat(answer->fds[0], &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), run.bytes);
  v1::GetLeaseRequest req;
  req.set_lease_id(id);
  v1::GetLeaseResponse lease;
  auto ctx2 = Ctx(kAlice);
  ASSERT_TRUE(pool->GetLease(ctx2.get(), req, &lease).ok());
  std::vector<uint8_t> buf(run.bytes);
  EXPECT_EQ(lease.lease().runs(0).backing_path(), "");
  ASSERT_EQ(pread(answer->fds[0], buf.data(), buf.size(),
                  lease.lease().runs(0).view_offset()),
            static_cast<ssize_t>(buf.size()));
  EXPECT_EQ(buf, std::vector<uint8_t>(run.bytes, 0x5a));
  close(answer->fds[0]);

  struct Case {
    std::string request;
    absl::StatusCode code;
  } cases[] = {
      {"backing " + id + " " + kBob, absl::StatusCode::kPermissionDenied},
      {"backing " + id + " nobody-token", absl::StatusCode::kUnauthenticated},
      {"backing " + id, absl::StatusCode::kUnauthenticated},
      {"backing l-0000000000000000 " + std::string(kAlice),
       absl::StatusCode::kNotFound},
      {"device 0000:00:01.0 " + std::string(kAlice),
       absl::StatusCode::kPermissionDenied},
      {"device 0000:00:01.0 " + std::string(kRoot),
       absl::StatusCode::kNotFound},  // the sim source drives no device
      {"fetch everything", absl::StatusCode::kInvalidArgument},
      {"", absl::StatusCode::kInvalidArgument},
      {std::string(5000, 'x'), absl::StatusCode::kInvalidArgument},
  };
  for (const Case& c : cases) {
    auto a = client_internal::FdRequest(info.fd_socket(), c.request,
                                        absl::Seconds(5));
    EXPECT_EQ(a.status().code(), c.code)
        << c.request.substr(0, 40) << ": " << a.status();
  }
  auto root = Connect(kRoot);
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->OpenDevice("0000:00:01.0").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(root->devices().empty());
}

// A unix socket that accepts and never answers: the fd socket of a daemon
// that hangs.
class SilentSocket {
 public:
  explicit SilentSocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    // The kernel completes connections in the backlog: no accept needed
    // for a silent peer.
  }
  ~SilentSocket() {
    close(fd_);
    unlink(path_.c_str());
  }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST_F(FakeServerTest, AnFdRequestThatGetsNoAnswerEndsAtItsDeadline) {
  SilentSocket silent(dir_ + "/silent.fds");
  const absl::Time start = absl::Now();
  auto a = client_internal::FdRequest(dir_ + "/silent.fds", "backing l-1 token",
                                      absl::Seconds(1));
  const absl::Duration took = absl::Now() - start;
  std::printf("FdRequest to a silent socket: %s after %s\n",
              a.status().ToString().c_str(),
              absl::FormatDuration(took).c_str());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kDeadlineExceeded)
      << a.status();
  EXPECT_GE(took, absl::Milliseconds(950));
  EXPECT_LT(took, absl::Seconds(3));
}

TEST_F(FakeServerTest, AMemfdAllocateWhoseFdSocketHangsFailsAndReleases) {
  SilentSocket silent(dir_ + "/silent.fds");
  ClientOptions o;
  o.endpoint = fake_->endpoint();
  o.timeout = std::chrono::milliseconds(500);
  o.fd_socket = dir_ + "/silent.fds";
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok()) << c.status();
  fake_->SetScript({Step::kMemfd});
  AllocateOptions ao;
  ao.bytes = 4096;
  const absl::Time start = absl::Now();
  auto region = (*c)->Allocate(ao);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(region.status().code(), absl::StatusCode::kDeadlineExceeded)
      << region.status();
  EXPECT_LT(took, absl::Seconds(3));
  // The granted lease is given back.
  for (int i = 0; i < 100 && fake_->releases() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(fake_->releases(), 1);
}

}  // namespace
}  // namespace physpool::testing
