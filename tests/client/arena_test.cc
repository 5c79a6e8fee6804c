// SPDX-License-Identifier: Apache-2.0
// physpool::Arena against the real daemon: buffers in the arena's leased
// memory, a lease revoked or preempted under live buffers, growth to a
// second lease and its idle return, the daemon's refusals, destroying an
// arena with live buffers, 8 threads at once, and the C API.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "physpool/client.h"
#include "physpool/physpool.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// Whether [p, p + bytes) is mapped in this process (mincore: ENOMEM if
// not).
bool Mapped(const void* p, uint64_t bytes) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  std::vector<unsigned char> vec((bytes + page - 1) / page + 1);
  return mincore(reinterpret_cast<void*>(start),
                 reinterpret_cast<uintptr_t>(p) + bytes - start,
                 vec.data()) == 0;
}

// What on_lost was told, for a test to wait on.
struct Losses {
  absl::Mutex mu;
  std::vector<ArenaLoss> seen ABSL_GUARDED_BY(mu);
  std::function<void(const ArenaLoss&)> Callback() {
    return [this](const ArenaLoss& l) {
      absl::MutexLock lock(&mu);
      seen.push_back(l);
    };
  }
  // The first loss, waiting up to 10 s for it.
  std::optional<ArenaLoss> Await() {
    absl::MutexLock lock(&mu);
    auto any = [this]()
                   ABSL_SHARED_LOCKS_REQUIRED(mu) { return !seen.empty(); };
    if (!mu.AwaitWithTimeout(absl::Condition(&any), absl::Seconds(10))) {
      return std::nullopt;
    }
    return seen.front();
  }
};

class ArenaTest : public ::testing::Test {
 protected:
  void SetUp() override { StartDaemon({}); }
  void StartDaemon(DaemonOptions o) {
    o.default_ttl_seconds = 30;
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
  std::vector<v1::Lease> Leases(const std::string& tenant) {
    auto admin = daemon_->Admin();
    return AllLeases(admin.get(), kRoot, tenant);
  }
  // Waits up to 10 s for `tenant` to hold `n` leases.
  bool AwaitLeases(const std::string& tenant, size_t n) {
    const absl::Time until = absl::Now() + absl::Seconds(10);
    while (Leases(tenant).size() != n) {
      if (absl::Now() > until) return false;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return true;
  }
  void Revoke(const std::string& id) {
    auto admin = daemon_->Admin();
    v1::RevokeLeaseRequest req;
    req.set_lease_id(id);
    req.set_reason("device reset");
    v1::RevokeLeaseResponse resp;
    auto ctx = Ctx(kRoot);
    ASSERT_TRUE(admin->RevokeLease(ctx.get(), req, &resp).ok());
  }
  std::unique_ptr<Daemon> daemon_;
};

BufferOptions Bytes(uint64_t bytes, uint64_t alignment = 0) {
  BufferOptions o;
  o.bytes = bytes;
  o.alignment = alignment;
  return o;
}

TEST_F(ArenaTest, BytesWrittenThroughOneBufferAreSeenOnlyThere) {
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  ArenaOptions ao;
  ao.bytes = 2 * kMiB;
  ao.label = "arena";
  auto arena = client->CreateArena(ao);
  ASSERT_TRUE(arena.ok()) << arena.status();
  ASSERT_EQ((*arena)->lease_ids().size(), 1u);
  const std::string lease = (*arena)->lease_ids()[0];
  std::vector<Buffer> buffers;
  for (uint64_t i = 0; i < 6; ++i) {
    auto b = (*arena)->Allocate(Bytes(4096 * (i + 1), i % 2 ? 65536 : 0));
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_EQ(b->runs().size(), 1u);
    if (i % 2) {
      EXPECT_EQ(b->runs()[0].iova % 65536, 0u);
    }
    std::memset(b->runs()[0].cpu, static_cast<int>(0xa0 + i), b->bytes());
    buffers.push_back(*std::move(b));
  }
  EXPECT_EQ((*arena)->live_buffers(), 6u);
  // The lease's memory through the daemon's fd socket, mapped anew: each
  // buffer's bytes at its IOVA, zero everywhere else.
  auto view = MapView(*daemon_, lease, kAlice);
  ASSERT_TRUE(view.ok()) << view.status();
  auto pool = daemon_->Pool();
  v1::GetLeaseRequest req;
  req.set_lease_id(lease);
  v1::GetLeaseResponse got;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->GetLease(ctx.get(), req, &got).ok());
  std::vector<int> expect((*view)->bytes, 0);
  auto offset_of = [&](uint64_t iova) -> int64_t {
    for (const v1::Run& r : got.lease().runs()) {
      if (r.iova() <= iova && iova < r.iova() + r.length())
        return static_cast<int64_t>(r.view_offset() + (iova - r.iova()));
    }
    return -1;
  };
  for (size_t i = 0; i < buffers.size(); ++i) {
    const Buffer::Run& r = buffers[i].runs()[0];
    const int64_t off = offset_of(r.iova);
    ASSERT_GE(off, 0);
    for (uint64_t k = 0; k < r.bytes; ++k) expect[off + k] = 0xa0 + i;
  }
  for (uint64_t k = 0; k < (*view)->bytes; ++k) {
    ASSERT_EQ((*view)->base[k], expect[k]) << "byte " << k << " of the lease";
  }
  buffers.clear();
  EXPECT_EQ((*arena)->live_buffers(), 0u);
  EXPECT_EQ((*arena)->used_bytes(), 0u);
  arena->reset();
  EXPECT_TRUE(AwaitLeases("alice", 0)) << "the arena released its lease";
}

TEST_F(ArenaTest, ARevokedLeaseTakesItsBuffersAndUnmapsThem) {
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  Losses losses;
  ArenaOptions ao;
  ao.bytes = kMiB;
  ao.on_lost = losses.Callback();
  auto arena = client->CreateArena(ao);
  ASSERT_TRUE(arena.ok()) << arena.status();
  auto a = (*arena)->Allocate(Bytes(8192));
  auto b = (*arena)->Allocate(Bytes(65536));
  ASSERT_TRUE(a.ok() && b.ok());
  void* cpu = b->runs()[0].cpu;
  ASSERT_TRUE(Mapped(cpu, 65536));
  Revoke((*arena)->lease_ids()[0]);
  std::optional<ArenaLoss> loss = losses.Await();
  ASSERT_TRUE(loss.has_value());
  EXPECT_EQ(loss->kind, "revoked");
  EXPECT_EQ(loss->reason, "device reset");
  EXPECT_EQ(std::set<uint64_t>(loss->buffers.begin(), loss->buffers.end()),
            (std::set<uint64_t>{a->id(), b->id()}));
  EXPECT_TRUE(a->lost());
  EXPECT_TRUE(b->lost());
  // Unmapped right after the callback returned.
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (Mapped(cpu, 65536) && absl::Now() < until)
    absl::SleepFor(absl::Milliseconds(5));
  EXPECT_FALSE(Mapped(cpu, 65536)) << "a lost buffer's memory is unmapped";
  // No growth allowed: later allocations fail UNAVAILABLE, naming the loss.
  auto c = (*arena)->Allocate(Bytes(4096));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_NE(c.status().message().find("revoked"), std::string::npos);
  EXPECT_TRUE((*arena)->lease_ids().empty());
  a->Free();
  b->Free();
  EXPECT_EQ((*arena)->live_buffers(), 0u);
}

TEST_F(ArenaTest, APreemptedLeaseIsReportedWithItsDeadline) {
  // One 8 MiB segment: bob's reclaim needs the arena's preemptible lease.
  daemon_.reset();
  DaemonOptions o;
  o.segments = {"{bytes: 8388608, freelist: 0, numa: 0}"};
  StartDaemon(o);
  auto alice = Connect(kAlice);
  auto bob = Connect(kBob);
  ASSERT_TRUE(alice && bob);
  Losses losses;
  ArenaOptions ao;
  ao.bytes = 6 * kMiB;
  ao.preemptible = true;
  ao.on_lost = losses.Callback();
  auto arena = alice->CreateArena(ao);
  ASSERT_TRUE(arena.ok()) << arena.status();
  auto a = (*arena)->Allocate(Bytes(kMiB));
  ASSERT_TRUE(a.ok()) << a.status();
  AllocateOptions big;
  big.bytes = 4 * kMiB;
  big.max_segments = 1;
  big.may_reclaim = true;
  auto region = bob->Allocate(big);
  ASSERT_TRUE(region.ok()) << region.status();
  std::optional<ArenaLoss> loss = losses.Await();
  ASSERT_TRUE(loss.has_value());
  EXPECT_EQ(loss->kind, "preempted");
  EXPECT_GT(loss->deadline_unix_ms, 0);
  EXPECT_EQ(loss->buffers, std::vector<uint64_t>{a->id()});
  EXPECT_TRUE(a->lost());
  EXPECT_EQ((*arena)->Allocate(Bytes(4096)).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(ArenaTest, GrowsToASecondLeaseAndReturnsItWhenIdle) {
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  ArenaOptions ao;
  ao.bytes = kMiB;
  ao.max_bytes = 3 * kMiB;
  ao.idle_release = std::chrono::milliseconds(300);
  auto arena = client->CreateArena(ao);
  ASSERT_TRUE(arena.ok()) << arena.status();
  auto first = (*arena)->Allocate(Bytes(kMiB));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*arena)->lease_ids().size(), 1u);
  auto second = (*arena)->Allocate(Bytes(512 * 1024));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*arena)->lease_ids().size(), 2u);
  EXPECT_EQ((*arena)->leased_bytes(), 2 * kMiB);
  EXPECT_EQ(Leases("alice").size(), 2u);
  // Larger than a region: a lease shaped like the buffer, up to max_bytes.
  EXPECT_EQ((*arena)->Allocate(Bytes(2 * kMiB)).status().code(),
            absl::StatusCode::kResourceExhausted);
  // The extra lease, empty, goes back after idle_release; the first stays.
  second->Free();
  EXPECT_TRUE(AwaitLeases("alice", 1));
  EXPECT_EQ((*arena)->lease_ids().size(), 1u);
  EXPECT_EQ((*arena)->leased_bytes(), kMiB);
  first->Free();
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ(Leases("alice").size(), 1u) << "the first lease is kept";
}

TEST_F(ArenaTest, GrowthRefusedByTheDaemonKeepsItsStatus) {
  auto client = Connect(kCarol);  // limits: 2 leases, 1 MiB
  ASSERT_NE(client, nullptr);
  ArenaOptions ao;
  ao.bytes = 512 * 1024;
  ao.max_bytes = 4 * kMiB;
  auto arena = client->CreateArena(ao);
  ASSERT_TRUE(arena.ok()) << arena.status();
  auto a = (*arena)->Allocate(Bytes(512 * 1024));
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = (*arena)->Allocate(Bytes(512 * 1024));  // grows: quota allows it
  ASSERT_TRUE(b.ok()) << b.status();
  auto c = (*arena)->Allocate(Bytes(512 * 1024));  // quota: 1 MiB
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted)
      << c.status();
  EXPECT_NE(c.status().message().find("arena: growing"), std::string::npos)
      << c.status();
}

TEST_F(ArenaTest, BadRequestsAreInvalidArguments) {
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  ArenaOptions ao;
  EXPECT_EQ(client->CreateArena(ao).status().code(),
            absl::StatusCode::kInvalidArgument);
  ao.bytes = kMiB;
  ao.max_bytes = 4096;
  EXPECT_EQ(client->CreateArena(ao).status().code(),
            absl::StatusCode::kInvalidArgument);
  ao.max_bytes = 0;
  auto arena = client->CreateArena(ao);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_EQ((*arena)->Allocate(Bytes(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*arena)->Allocate(Bytes(4096, 3 * 4096)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*arena)->Allocate(Bytes(2 * kMiB)).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(ArenaTest, DestroyedWithLiveBuffersKeepsTheLeaseUntilTheLastIsFreed) {
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  ArenaOptions ao;
  ao.bytes = kMiB;
  auto arena = client->CreateArena(ao);
  ASSERT_TRUE(arena.ok()) << arena.status();
  auto b = (*arena)->Allocate(Bytes(4096));
  ASSERT_TRUE(b.ok());
  ::testing::internal::CaptureStderr();
  arena->reset();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("Arena destroyed with 1 live buffers"), std::string::npos)
      << err;
  std::memset(b->runs()[0].cpu, 7, 4096);  // still mapped
  EXPECT_EQ(Leases("alice").size(), 1u);
  b->Free();
  EXPECT_TRUE(AwaitLeases("alice", 0));
}

TEST_F(ArenaTest, EightThreadsAllocateAndFreeAtOnce) {
  auto client = Connect(kAlice);
  ASSERT_NE(client, nullptr);
  ArenaOptions ao;
  ao.bytes = 8 * kMiB;
  auto arena = client->CreateArena(ao);
  ASSERT_TRUE(arena.ok()) << arena.status();
  Arena* a = arena->get();
  std::atomic<int> errors{0};
  std::atomic<uint64_t> placed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<Buffer> mine;
      for (int i = 0; i < 3000; ++i) {
        if (mine.size() < 8 && rng() % 2 == 0) {
          auto b = a->Allocate(
              Bytes(4096 * (1 + rng() % 16), rng() % 3 == 0 ? 32768 : 0));
          if (!b.ok()) {
            if (b.status().code() != absl::StatusCode::kResourceExhausted)
              ++errors;
            continue;
          }
          std::memset(b->runs()[0].cpu, t + 1, b->bytes());
          mine.push_back(*std::move(b));
          ++placed;
        } else if (!mine.empty()) {
          const size_t k = rng() % mine.size();
          const auto* p =
              static_cast<const unsigned char*>(mine[k].runs()[0].cpu);
          for (uint64_t j = 0; j < mine[k].bytes(); j += 512) {
            if (p[j] != t + 1) {
              ++errors;  // another thread's buffer overlapped this one
              break;
            }
          }
          mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(k));
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(placed.load(), 1000u);
  EXPECT_EQ(a->live_buffers(), 0u);
  EXPECT_EQ(a->used_bytes(), 0u);
}

TEST_F(ArenaTest, CApi) {
  physpool_client* c = nullptr;
  ASSERT_EQ(physpool_connect(("unix:" + daemon_->socket()).c_str(), kBob, &c),
            0)
      << physpool_last_error();
  physpool_arena_options o;
  std::memset(&o, 0, sizeof o);
  physpool_arena* arena = nullptr;
  EXPECT_EQ(physpool_arena_create(c, &o, nullptr, nullptr, &arena), 3);
  EXPECT_EQ(arena, nullptr);
  o.region.bytes = kMiB;
  ASSERT_EQ(physpool_arena_create(c, &o, nullptr, nullptr, &arena), 0)
      << physpool_last_error();
  physpool_buffer_options bo;
  std::memset(&bo, 0, sizeof bo);
  bo.bytes = 10000;
  bo.alignment = 65536;
  physpool_buffer* b = nullptr;
  ASSERT_EQ(physpool_buffer_alloc(arena, &bo, &b), 0) << physpool_last_error();
  ASSERT_EQ(physpool_buffer_run_count(b), 1u);
  const physpool_run run = physpool_buffer_run(b, 0);
  EXPECT_EQ(run.iova % 65536, 0u);
  EXPECT_EQ(run.bytes, 12288u);
  std::memset(run.cpu, 1, run.bytes);
  EXPECT_GT(physpool_buffer_id(b), 0u);
  EXPECT_EQ(physpool_buffer_lost(b), 0);
  EXPECT_EQ(physpool_buffer_run(b, 1).cpu, nullptr);
  EXPECT_EQ(physpool_buffer_lost(nullptr), -1);
  physpool_buffer* none = b;
  EXPECT_EQ(physpool_buffer_alloc(arena, nullptr, &none), 3);
  EXPECT_EQ(none, nullptr);
  bo.bytes = 2 * kMiB;
  EXPECT_EQ(physpool_buffer_alloc(arena, &bo, &none), 8);
  physpool_buffer_free(b);
  physpool_buffer_free(nullptr);
  physpool_arena_destroy(arena);
  physpool_disconnect(c);
}

}  // namespace
}  // namespace physpool::testing
