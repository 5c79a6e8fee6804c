// The client library against the real daemon.
#include "physpool/client.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "client/fd_socket.h"
#include "gtest/gtest.h"
#include "physpool/physpool.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

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
  const pid_t child = fork();
  if (child == 0) {
    for (const auto& run : lease.lease().runs()) {
      std::ifstream f(run.backing_path(), std::ios::binary);
      f.seekg(static_cast<std::streamoff>(run.backing_offset()));
      for (uint64_t i = 0; i < run.length(); ++i) {
        if (static_cast<uint8_t>(f.get()) !=
            static_cast<uint8_t>(run.iova() + i))
          _exit(1);
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

TEST_F(ClientTest, CApi) {
  physpool_client* c = nullptr;
  ASSERT_EQ(physpool_connect(("unix:" + daemon_->socket()).c_str(), kBob, &c),
            0)
      << physpool_last_error();
  physpool_alloc_options o;
  std::memset(&o, 0, sizeof o);
  o.bytes = 2 << 20;
  o.numa_node = -1;
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
  auto answer = client_internal::FdRequest(info.fd_socket(),
                                           "backing " + id + " " + kAlice);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->fds.size(), 1u);
  ASSERT_EQ(answer->words, (std::vector<std::string>{"1", "0"}));
  v1::GetLeaseRequest req;
  req.set_lease_id(id);
  v1::GetLeaseResponse lease;
  auto ctx2 = Ctx(kAlice);
  ASSERT_TRUE(pool->GetLease(ctx2.get(), req, &lease).ok());
  std::vector<uint8_t> buf(run.bytes);
  ASSERT_EQ(pread(answer->fds[0], buf.data(), buf.size(),
                  lease.lease().runs(0).backing_offset()),
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
    auto a = client_internal::FdRequest(info.fd_socket(), c.request);
    EXPECT_EQ(a.status().code(), c.code)
        << c.request.substr(0, 40) << ": " << a.status();
  }
  auto root = Connect(kRoot);
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->OpenDevice("0000:00:01.0").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(root->devices().empty());
}

}  // namespace
}  // namespace physpool::testing
