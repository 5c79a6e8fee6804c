// SPDX-License-Identifier: Apache-2.0
// The lease store on a small tmpfs that fills up under load (needs root: it
// mounts the tmpfs). What must hold (docs/operations.md, "The lease store";
// server/pool_manager.h):
// - an RPC write (Allocate's grant, Renew, Release) that the store refuses is
//   answered UNAVAILABLE ("the lease store failed") and changes nothing;
// - every answer OK is durable: after a kill -9 and a restart every lease
//   granted or renewed with OK and not released with OK is back with the same
//   runs and its last answered expiry (or has expired by it), every release
//   answered OK stays released, no grant answered UNAVAILABLE exists;
// - an end that cannot be undone (an expiry) is retried until the store takes
//   it: meanwhile its pages stay out of the pool (scrubbing), GetStats says
//   store_writable false, physpool_store_writable is 0 and grpc health is
//   NOT_SERVING; once the store takes writes again (a probe every 500 ms) the
//   memory comes back and health is SERVING.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

using grpc::health::v1::HealthCheckResponse;
using Runs = std::vector<std::pair<uint64_t, uint64_t>>;  // iova, length

constexpr uint64_t kTotal = 24 << 20;  // the harness's two segments

Runs RunsOf(const v1::Lease& l) {
  Runs r;
  for (const auto& run : l.runs()) r.push_back({run.iova(), run.length()});
  return r;
}

bool Eventually(const std::function<bool()>& pred, double seconds = 30) {
  const auto end = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int>(seconds * 1000));
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return pred();
}

// What a call's answer says about the change it asked for.
enum Outcome { kOk, kStoreFailed, kRefused, kUnknown, kOutcomes };
const char* const kOutcomeNames[] = {"ok", "store-failed", "refused",
                                     "unknown"};

Outcome Classify(const grpc::Status& s) {
  if (s.ok()) return kOk;
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      // The daemon's own answer; any other UNAVAILABLE is the transport
      // (the daemon was killed): the change may or may not have happened.
      return absl::StrContains(s.error_message(), "the lease store failed")
                 ? kStoreFailed
                 : kUnknown;
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::PERMISSION_DENIED:
      return kRefused;
    default:
      return kUnknown;
  }
}

enum OpKind { kAllocate, kRenew, kRelease, kOps };
const char* const kOpNames[] = {"Allocate", "Renew", "Release"};

// One lease granted with OK, as its owner (one client thread) saw it.
struct LeaseRec {
  std::string token, rid;
  Runs runs;
  int64_t ok_expiry = 0;     // the expiry of the last answer OK
  bool released_ok = false;  // a Release answered OK (released or not)
  bool unknown = false;      // a later call's outcome is unknown (the kill)
  bool ended = false;        // a Renew answered NOT_FOUND: it had ended
  int store_failed = 0;      // Renew/Release answered "store failed"
};

// Every attempt of one request id.
struct RidRec {
  std::string token;
  v1::AllocateRequest req;
  int answers[kOutcomes] = {};
  std::string lease;  // granted (answered OK)
};

// Concurrent clients of two tenants: Allocate (with request ids, retried
// once with the same id after "store failed"), Renew, Release; some leases
// have a TTL of 1 s and are never renewed, so they expire. Every answer is
// recorded.
class Load {
 public:
  explicit Load(Daemon* d) : d_(d) {}
  ~Load() { Stop(); }

  void Start(int threads) {
    stop_ = false;
    for (int c = 0; c < threads; ++c)
      threads_.emplace_back([this, c] { Client(c); });
  }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  void SetPhase(int p) {
    phase_ = p;
    if (p == 2) used_phase_2_ = true;
  }
  int64_t Count(int phase, OpKind op, Outcome o) const {
    return counts_[phase][op][o].load();
  }
  std::string Summary() const {
    std::string out;
    const char* const names[] = {
        "  before the fill:", "  after the fill: ", "  space back:     "};
    for (int p = 0; p < 3; ++p) {
      if (p == 2 && !used_phase_2_) break;
      absl::StrAppend(&out, names[p]);
      for (int op = 0; op < kOps; ++op) {
        absl::StrAppend(&out, " ", kOpNames[op], "{");
        for (int o = 0; o < kOutcomes; ++o) {
          absl::StrAppend(&out, o ? " " : "", kOutcomeNames[o], "=",
                          counts_[p][op][o].load());
        }
        absl::StrAppend(&out, "}");
      }
      absl::StrAppend(&out, "\n");
    }
    return out;
  }

  std::mutex mu;
  std::map<std::string, LeaseRec> leases;  // by lease id
  std::map<std::string, RidRec> rids;      // by request id

 private:
  void Note(OpKind op, Outcome o) { ++counts_[phase_][op][o]; }

  void Client(int c) {
    std::mt19937_64 r(1000 + c);
    const std::string token = c % 2 ? kAlice : kBob;
    auto pool = d_->Pool();
    std::vector<std::string> owned;  // this thread's live leases
    int n = 0;
    while (!stop_) {
      // 30% Allocate (always below 4 leases, never above 32), 40% Renew,
      // 30% Release: the pool does not fill up.
      const int op = r() % 10;
      if (owned.size() < 4 || (op < 3 && owned.size() < 32)) {
        v1::AllocateRequest req;
        req.set_bytes(4096 * (1 + r() % 16));
        if (r() % 4 == 0) {
          req.set_alignment(65536);
          req.set_max_segments(1);
        }
        const bool short_ttl = r() % 3 == 0;
        req.set_ttl_seconds(short_ttl ? 1 : 120);
        req.set_request_id(absl::StrCat("sf-", c, "-", n++));
        {
          std::lock_guard<std::mutex> l(mu);
          rids[req.request_id()].token = token;
          rids[req.request_id()].req = req;
        }
        for (int attempt = 0; attempt < 2 && !stop_; ++attempt) {
          v1::AllocateResponse resp;
          auto ctx = Ctx(token, 2);
          const Outcome o = Classify(pool->Allocate(ctx.get(), req, &resp));
          Note(kAllocate, o);
          std::lock_guard<std::mutex> l(mu);
          RidRec& rec = rids[req.request_id()];
          ++rec.answers[o];
          if (o == kOk) {
            rec.lease = resp.lease().id();
            LeaseRec& lr = leases[resp.lease().id()];
            lr.token = token;
            lr.rid = req.request_id();
            lr.runs = RunsOf(resp.lease());
            lr.ok_expiry = resp.lease().expires_unix_ms();
            // Short leases are left to expire.
            if (!short_ttl) owned.push_back(resp.lease().id());
          }
          if (o != kStoreFailed) break;
        }
        continue;
      }
      const size_t pick = r() % owned.size();
      const std::string id = owned[pick];
      auto drop = [&] {
        owned[pick] = owned.back();
        owned.pop_back();
      };
      auto ctx = Ctx(token, 2);
      if (op < 7) {
        v1::RenewRequest req;
        req.set_lease_id(id);
        v1::RenewResponse resp;
        const grpc::Status s = pool->Renew(ctx.get(), req, &resp);
        const Outcome o = Classify(s);
        Note(kRenew, o);
        std::lock_guard<std::mutex> l(mu);
        LeaseRec& lr = leases[id];
        if (o == kOk) {
          lr.ok_expiry = resp.lease().expires_unix_ms();
          lr.unknown = false;
        } else if (o == kStoreFailed) {
          ++lr.store_failed;
        } else if (o == kUnknown) {
          lr.unknown = true;
        } else if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
          lr.ended = true;
          drop();
        }
      } else {
        v1::ReleaseRequest req;
        req.set_lease_id(id);
        v1::ReleaseResponse resp;
        const Outcome o = Classify(pool->Release(ctx.get(), req, &resp));
        Note(kRelease, o);
        std::lock_guard<std::mutex> l(mu);
        LeaseRec& lr = leases[id];
        if (o == kOk) {
          lr.released_ok = true;
          drop();
        } else if (o == kStoreFailed) {
          ++lr.store_failed;  // still ours: released later, maybe
        } else if (o == kUnknown) {
          lr.unknown = true;
          drop();
        } else {
          drop();
        }
      }
    }
  }

  Daemon* const d_;
  std::atomic<bool> stop_{false};
  std::atomic<int> phase_{0};
  bool used_phase_2_ = false;
  std::atomic<int64_t> counts_[3][kOps][kOutcomes] = {};
  std::vector<std::thread> threads_;
};

class StoreFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u)
        << "store_fault_test mounts a tmpfs for the lease store and must run "
           "as root (CI does); running as uid "
        << geteuid();
    char tmpl[] = "/tmp/physpool-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << strerror(errno);
    mnt_ = tmpl;
    ASSERT_EQ(mount("tmpfs", mnt_.c_str(), "tmpfs", 0, "size=3m,mode=0700"), 0)
        << "cannot mount a tmpfs on " << mnt_ << ": " << strerror(errno)
        << " (the test needs CAP_SYS_ADMIN: root outside a restricted "
           "container)";
    mounted_ = true;
  }

  void TearDown() override {
    if (HasFailure() && d_) {
      std::fprintf(stderr, "physpoold log (without debug lines, tail):\n%s\n",
                   Tail(WithoutDebug(d_->Log()), 12000).c_str());
    }
    d_.reset();  // stops the daemon: nothing holds the mount
    if (mounted_ && umount2(mnt_.c_str(), 0) != 0) {
      ADD_FAILURE() << "umount " << mnt_ << ": " << strerror(errno);
      umount2(mnt_.c_str(), MNT_DETACH);
    }
    if (!mnt_.empty()) rmdir(mnt_.c_str());
  }

  static std::string WithoutDebug(const std::string& log) {
    std::string out;
    for (size_t at = 0; at < log.size();) {
      size_t end = log.find('\n', at);
      if (end == std::string::npos) end = log.size();
      const std::string line = log.substr(at, end - at);
      if (!absl::StrContains(line, "level=debug"))
        absl::StrAppend(&out, line, "\n");
      at = end + 1;
    }
    return out;
  }
  static std::string Tail(const std::string& s, size_t n) {
    return s.size() <= n ? s : s.substr(s.size() - n);
  }

  void StartDaemon() {
    DaemonOptions o;
    o.store_path = mnt_ + "/leases.db";
    o.expiring_warning_seconds = 1;
    auto d = Daemon::Start(o);
    ASSERT_TRUE(d.ok()) << d.status();
    d_ = std::move(*d);
  }

  // Writes a file on the tmpfs until it is full (ENOSPC).
  void Fill() {
    const std::string path = mnt_ + "/filler";
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
    std::vector<char> buf(1 << 20, 'x');
    for (size_t chunk : {size_t{1} << 20, size_t{4096}, size_t{1}}) {
      for (;;) {
        const ssize_t n = write(fd, buf.data(), chunk);
        if (n > 0) {
          filled_ += n;
          continue;
        }
        ASSERT_EQ(errno, ENOSPC)
            << "filling " << path << ": " << strerror(errno);
        break;
      }
    }
    close(fd);
  }
  // Deletes the filler; with `size`, also makes the tmpfs that big.
  void Unfill(const char* size = nullptr) {
    ASSERT_EQ(unlink((mnt_ + "/filler").c_str()), 0) << strerror(errno);
    if (size != nullptr) {
      const std::string opts = absl::StrCat("size=", size, ",mode=0700");
      ASSERT_EQ(mount("tmpfs", mnt_.c_str(), "tmpfs", MS_REMOUNT, opts.c_str()),
                0)
          << "remount " << mnt_ << " " << opts << ": " << strerror(errno);
    }
  }

  HealthCheckResponse::ServingStatus Health() {
    auto h = grpc::health::v1::Health::NewStub(d_->UnixChannel());
    grpc::health::v1::HealthCheckRequest req;
    HealthCheckResponse resp;
    auto ctx = Ctx("", 5);
    if (!h->Check(ctx.get(), req, &resp).ok())
      return HealthCheckResponse::UNKNOWN;
    return resp.status();
  }
  v1::GetStatsResponse Stats() {
    v1::GetStatsResponse st;
    auto ctx = Ctx(kRoot, 5);
    EXPECT_TRUE(d_->Admin()->GetStats(ctx.get(), {}, &st).ok());
    return st;
  }
  v1::GetPoolInfoResponse Info() {
    v1::GetPoolInfoResponse info;
    auto ctx = Ctx(kRoot, 5);
    EXPECT_TRUE(d_->Pool()->GetPoolInfo(ctx.get(), {}, &info).ok());
    return info;
  }

  // After a restart the first calls may go out on the killed daemon's
  // cached connection: retry transport errors as a client would.
  template <typename Call>
  grpc::Status Retry(Call call) {
    grpc::Status s = call();
    for (int i = 0; i < 20 && s.error_code() == grpc::StatusCode::UNAVAILABLE &&
                    !absl::StrContains(s.error_message(), "lease store");
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      s = call();
    }
    return s;
  }

  // Every live lease and the pool's totals, once nothing is being zeroed
  // and the lease list holds still (restored leases that expired while the
  // daemon was down end at once).
  std::pair<std::map<std::string, v1::Lease>, v1::GetPoolInfoResponse> Look() {
    auto list = [&] {
      std::map<std::string, v1::Lease> out;
      v1::AdminListLeasesRequest req;
      for (;;) {
        v1::ListLeasesResponse resp;
        const grpc::Status s = Retry([&] {
          resp.Clear();
          auto ctx = Ctx(kRoot, 5);
          return d_->Admin()->ListLeases(ctx.get(), req, &resp);
        });
        EXPECT_TRUE(s.ok()) << s.error_message();
        if (!s.ok()) return out;
        for (const auto& l : resp.leases()) out[l.id()] = l;
        if (resp.next_page_token().empty()) return out;
        req.set_page_token(resp.next_page_token());
      }
    };
    std::map<std::string, v1::Lease> leases;
    v1::GetPoolInfoResponse info;
    for (int i = 0; i < 500; ++i) {
      leases = list();
      info = Info();
      const auto after = list();
      bool same = after.size() == leases.size() &&
                  std::equal(after.begin(), after.end(), leases.begin(),
                             [](const auto& a, const auto& b) {
                               return a.first == b.first;
                             });
      if (same && info.scrubbing_bytes() == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return {leases, info};
  }

  // Checks the daemon's leases and totals against every answer the clients
  // got (after a restart, or after the store came back without one).
  std::map<std::string, v1::Lease> Verify(const Load& load, const char* when) {
    const auto looked = Look();
    const std::map<std::string, v1::Lease>& live = looked.first;
    const v1::GetPoolInfoResponse& info = looked.second;
    const int64_t now = absl::ToUnixMillis(absl::Now());
    constexpr int64_t kMargin = 1500;  // ms: expiry vs. when we looked
    int back = 0, expired = 0, in_flight = 0, extras = 0;
    for (const auto& [id, rec] : load.leases) {
      auto it = live.find(id);
      if (rec.released_ok) {
        EXPECT_EQ(it, live.end())
            << "lease " << id
            << " was released (answered OK) but is back after " << when;
        continue;
      }
      if (it == live.end()) {
        if (rec.unknown) {
          ++in_flight;  // a Release in flight at the kill
        } else if (rec.ok_expiry <= now + kMargin || rec.ended) {
          ++expired;
        } else {
          ADD_FAILURE() << "lease " << id << " (answered OK, expiry "
                        << rec.ok_expiry << ", now " << now
                        << ", store-failed calls on it " << rec.store_failed
                        << ") is lost after " << when;
        }
        continue;
      }
      ++back;
      EXPECT_EQ(RunsOf(it->second), rec.runs) << id;
      EXPECT_FALSE(rec.ended)
          << "lease " << id << ": a Renew was answered NOT_FOUND (ended), yet "
          << "the lease is back after " << when << " with expiry "
          << it->second.expires_unix_ms() << " (now " << now << ")";
      if (!rec.unknown) {
        // A Renew answered "store failed" changed nothing: the expiry is the
        // one of the last answer OK.
        EXPECT_EQ(it->second.expires_unix_ms(), rec.ok_expiry)
            << "lease " << id << " (" << rec.store_failed
            << " calls answered store-failed)";
      } else {
        EXPECT_GE(it->second.expires_unix_ms(), rec.ok_expiry) << id;
      }
    }
    // Every live lease was granted by an answer OK or one that was lost.
    for (const auto& [id, l] : live) {
      auto rid = load.rids.find(l.request_id());
      if (rid == load.rids.end()) {
        ADD_FAILURE() << "lease " << id << " has request id \""
                      << l.request_id() << "\" that no client sent";
        continue;
      }
      if (!load.leases.count(id)) {
        ++extras;
        EXPECT_GT(rid->second.answers[kUnknown], 0)
            << "lease " << id << " exists, but every Allocate with request id "
            << l.request_id() << " was answered without it ("
            << rid->second.answers[kStoreFailed] << " store-failed, "
            << rid->second.answers[kRefused] << " refused)";
      }
    }
    // No grant answered "store failed" only exists.
    for (const auto& [rid, rec] : load.rids) {
      if (rec.answers[kOk] || rec.answers[kUnknown]) continue;
      for (const auto& [id, l] : live)
        EXPECT_NE(l.request_id(), rid) << "granted though answered UNAVAILABLE";
    }
    // No page in two leases; every used page is leased.
    Runs all;
    uint64_t leased = 0;
    for (const auto& [id, l] : live) {
      for (const auto& r : RunsOf(l)) all.push_back(r);
      leased += l.bytes();
    }
    std::sort(all.begin(), all.end());
    for (size_t i = 1; i < all.size(); ++i)
      EXPECT_LE(all[i - 1].first + all[i - 1].second, all[i].first)
          << "overlap";
    EXPECT_EQ(info.scrubbing_bytes(), 0u);
    EXPECT_EQ(info.free_bytes() + info.used_bytes() + info.scrubbing_bytes(),
              kTotal);
    EXPECT_EQ(info.used_bytes(), leased);
    std::printf(
        "after %s: %d leases back, %d expired, %d released in flight, "
        "%d granted with the answer lost; %zu live\n",
        when, back, expired, in_flight, extras, live.size());
    EXPECT_GT(back + expired, 50) << "too little load to mean anything";
    return live;
  }

  std::string mnt_;
  bool mounted_ = false;
  uint64_t filled_ = 0;
  std::unique_ptr<Daemon> d_;
};

// Load, the tmpfs fills (the WAL grows into it, then a filler takes what is
// left), the load goes on against a full store, kill -9, space back,
// restart: every answer OK was durable and no answer "store failed" changed
// anything.
TEST_F(StoreFaultTest, FullStoreUnderLoadThenKill9KeepsEveryAnswer) {
  StartDaemon();
  ASSERT_TRUE(d_) << "no daemon";
  ASSERT_EQ(Health(), HealthCheckResponse::SERVING);
  Load load(d_.get());
  load.Start(4);
  // Phase 1: until 150 grants were answered, or the WAL filled the 3 MiB
  // tmpfs by itself (then the store fails already: SQLite checkpoints the
  // WAL only at 1000 pages, 4 MiB).
  Eventually(
      [&] {
        return load.Count(0, kAllocate, kOk) >= 150 ||
               load.Count(0, kAllocate, kStoreFailed) +
                       load.Count(0, kRenew, kStoreFailed) +
                       load.Count(0, kRelease, kStoreFailed) >
                   0;
      },
      20);
  const uint64_t expirations_before = Stats().lease_expirations();
  load.SetPhase(1);
  Fill();
  std::printf("tmpfs filled: %llu more bytes\n",
              static_cast<unsigned long long>(filled_));
  // Phase 2: the store is full. Watch the daemon say so while the load goes
  // on and short leases expire.
  bool not_serving = false, unwritable = false, metric_zero = false,
       held = false;
  uint64_t expirations_after = 0, store_errors = 0;
  const bool all_seen = Eventually(
      [&] {
        if (Health() == HealthCheckResponse::NOT_SERVING) not_serving = true;
        const v1::GetStatsResponse st = Stats();
        expirations_after = st.lease_expirations();
        store_errors = st.store_errors();
        if (!st.store_writable()) unwritable = true;
        if (MetricValue(Metrics(d_->metrics_port()),
                        "physpool_store_writable") == 0)
          metric_zero = true;
        // An expiry during the fault: its pages are held (scrubbing) since
        // its end cannot be recorded.
        if (expirations_after > expirations_before && !st.store_writable() &&
            Info().scrubbing_bytes() > 0)
          held = true;
        return not_serving && unwritable && metric_zero && held &&
               load.Count(1, kAllocate, kStoreFailed) > 0 &&
               load.Count(1, kRenew, kStoreFailed) > 0 &&
               load.Count(1, kRelease, kStoreFailed) > 0;
      },
      30);
  d_->Kill();
  load.Stop();
  std::printf("answers:\n%s", load.Summary().c_str());
  std::printf(
      "during the fault: NOT_SERVING seen %d, store_writable false seen %d, "
      "physpool_store_writable 0 seen %d, expired pages held %d; "
      "expirations %llu -> %llu; store errors %llu\n",
      not_serving, unwritable, metric_zero, held,
      static_cast<unsigned long long>(expirations_before),
      static_cast<unsigned long long>(expirations_after),
      static_cast<unsigned long long>(store_errors));
  EXPECT_TRUE(all_seen) << "not everything the fault must show was seen";
  EXPECT_TRUE(not_serving) << "health never NOT_SERVING with a full store";
  EXPECT_TRUE(unwritable) << "GetStats.store_writable never false";
  EXPECT_TRUE(metric_zero) << "physpool_store_writable never 0";
  EXPECT_TRUE(held) << "no expiry's pages seen held during the fault";
  for (int op = 0; op < kOps; ++op) {
    EXPECT_GT(load.Count(1, OpKind(op), kStoreFailed), 0)
        << kOpNames[op] << " was never answered UNAVAILABLE (store failed)";
  }

  // Space back; restart on the same store.
  Unfill("64m");
  ASSERT_TRUE(d_->Restart().ok()) << d_->Log();
  const std::map<std::string, v1::Lease> live = Verify(load, "the restart");

  // Serving again; a retry of a request that was answered only "store
  // failed" is served now (such answers are not remembered), and a retry of
  // one that was granted gets the same lease.
  EXPECT_TRUE(
      Eventually([&] { return Health() == HealthCheckResponse::SERVING; }, 10));
  EXPECT_TRUE(Stats().store_writable());
  int retried_failed = 0, retried_granted = 0;
  for (const auto& kv : load.rids) {
    const std::string& rid = kv.first;
    const RidRec& rec = kv.second;
    const bool only_failed = !rec.answers[kOk] && !rec.answers[kUnknown] &&
                             rec.answers[kStoreFailed] > 0;
    auto l = rec.lease.empty() ? live.end() : live.find(rec.lease);
    // (A lease of 1 s may have expired since Look: then the retry is
    // rightly refused; take the long ones.)
    const bool granted_live = l != live.end() && rec.req.ttl_seconds() > 1;
    if (!(only_failed && retried_failed < 5) &&
        !(granted_live && retried_granted < 5))
      continue;
    v1::AllocateResponse resp;
    const grpc::Status s = Retry([&] {
      auto ctx = Ctx(rec.token, 5);
      return d_->Pool()->Allocate(ctx.get(), rec.req, &resp);
    });
    ASSERT_TRUE(s.ok()) << rid << ": " << s.error_message();
    EXPECT_EQ(resp.lease().request_id(), rid);
    if (granted_live) {
      ++retried_granted;
      EXPECT_EQ(resp.lease().id(), rec.lease) << rid;
    } else {
      ++retried_failed;
      EXPECT_FALSE(live.count(resp.lease().id())) << rid;
    }
  }
  std::printf("retried: %d only-failed request ids, %d granted ones\n",
              retried_failed, retried_granted);
}

// The store fills under load and comes back without a restart: every end
// that was held is applied (health SERVING again, the memory back), the load
// is served again, and the daemon's state matches every answer, before and
// after a kill -9.
TEST_F(StoreFaultTest, FullStoreUnderLoadRecoversWithoutARestart) {
  StartDaemon();
  ASSERT_TRUE(d_) << "no daemon";
  Load load(d_.get());
  load.Start(4);
  Eventually(
      [&] {
        return load.Count(0, kAllocate, kOk) >= 150 ||
               load.Count(0, kAllocate, kStoreFailed) > 0;
      },
      20);
  const uint64_t expirations_before = Stats().lease_expirations();
  load.SetPhase(1);
  Fill();
  // Several expiries held while the store refuses writes.
  uint64_t held_bytes = 0;
  EXPECT_TRUE(Eventually(
      [&] {
        const v1::GetStatsResponse st = Stats();
        const auto info = Info();
        if (!st.store_writable())
          held_bytes = std::max<uint64_t>(held_bytes, info.scrubbing_bytes());
        return st.lease_expirations() >= expirations_before + 5 &&
               !st.store_writable() && info.scrubbing_bytes() > 0 &&
               Health() == HealthCheckResponse::NOT_SERVING &&
               load.Count(1, kRenew, kStoreFailed) > 0 &&
               load.Count(1, kRelease, kStoreFailed) > 0;
      },
      30))
      << "no held expiries seen with the store full";
  Unfill("64m");
  load.SetPhase(2);
  EXPECT_TRUE(
      Eventually([&] { return Health() == HealthCheckResponse::SERVING; }, 30))
      << "not SERVING again after the space came back";
  EXPECT_TRUE(Eventually(
      [&] {
        return load.Count(2, kAllocate, kOk) >= 50 &&
               load.Count(2, kRelease, kOk) >= 10;
      },
      30))
      << "the load is not served again";
  load.Stop();
  std::printf("answers:\n%s", load.Summary().c_str());
  std::printf("at most %llu bytes held while the store was full\n",
              static_cast<unsigned long long>(held_bytes));
  const v1::GetStatsResponse st = Stats();
  EXPECT_TRUE(st.store_writable());
  EXPECT_EQ(st.scrub_failed_bytes(), 0u);
  EXPECT_EQ(MetricValue(Metrics(d_->metrics_port()), "physpool_store_writable"),
            1);
  Verify(load, "the store came back");
  d_->Kill();
  ASSERT_TRUE(d_->Restart().ok()) << d_->Log();
  Verify(load, "a kill -9 after that");
}

// No kill: the store fills, a lease expires meanwhile (its pages stay out of
// the pool, NOT_SERVING), the space comes back, the expiry is recorded, the
// memory comes back and health is SERVING again; a kill -9 then does not
// bring the lease back.
TEST_F(StoreFaultTest, ExpiryDuringAFullStoreIsRecordedOnceSpaceComesBack) {
  StartDaemon();
  ASSERT_TRUE(d_) << "no daemon";
  auto pool = d_->Pool();
  v1::AllocateRequest req;
  req.set_bytes(1 << 20);
  req.set_ttl_seconds(1);
  req.set_request_id("expires-while-full");
  v1::AllocateResponse held;
  auto ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->Allocate(ctx.get(), req, &held).ok());
  auto watch_ctx = Ctx(kAlice, 60);
  auto watch = pool->Watch(watch_ctx.get(), {});
  watch->WaitForInitialMetadata();
  Fill();
  // The lease expires (EXPIRED); its end cannot be written.
  v1::LeaseEvent e;
  bool expired = false;
  while (!expired && watch->Read(&e)) {
    expired = e.kind() == v1::LeaseEvent::EXPIRED &&
              e.lease_id() == held.lease().id();
  }
  ASSERT_TRUE(expired) << "no EXPIRED event";
  ASSERT_TRUE(Eventually([&] { return !Stats().store_writable(); }, 10))
      << "GetStats.store_writable stays true with the store full";
  EXPECT_TRUE(Eventually(
      [&] { return Health() == HealthCheckResponse::NOT_SERVING; }, 10));
  EXPECT_EQ(MetricValue(Metrics(d_->metrics_port()), "physpool_store_writable"),
            0);
  // Held out of the pool for several probe intervals: the whole pool cannot
  // be had, and the lease's bytes are scrubbing.
  for (int i = 0; i < 4; ++i) {
    const auto info = Info();
    EXPECT_EQ(info.scrubbing_bytes(), held.lease().bytes()) << i;
    EXPECT_EQ(info.free_bytes(), kTotal - held.lease().bytes()) << i;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  v1::AllocateRequest all;
  all.set_bytes(kTotal);
  v1::AllocateResponse resp;
  ctx = Ctx(kBob);
  const grpc::Status whole = pool->Allocate(ctx.get(), all, &resp);
  EXPECT_EQ(whole.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << whole.error_message();
  EXPECT_FALSE(Stats().store_writable());
  EXPECT_EQ(Health(), HealthCheckResponse::NOT_SERVING);

  // Space back (the filler goes; the tmpfs keeps its 3 MiB).
  Unfill();
  EXPECT_TRUE(
      Eventually([&] { return Health() == HealthCheckResponse::SERVING; }, 30))
      << "health not SERVING again after the space came back";
  EXPECT_TRUE(Stats().store_writable());
  EXPECT_TRUE(Eventually([&] { return Info().free_bytes() == kTotal; }, 30))
      << "the expired lease's memory did not come back";
  EXPECT_EQ(MetricValue(Metrics(d_->metrics_port()), "physpool_store_writable"),
            1);
  ctx = Ctx(kBob);
  const grpc::Status served = pool->Allocate(ctx.get(), all, &resp);
  EXPECT_TRUE(served.ok()) << served.error_message();
  watch_ctx->TryCancel();
  watch->Finish();
  // The end was recorded: a kill -9 does not bring the lease back.
  d_->Kill();
  ASSERT_TRUE(d_->Restart().ok()) << d_->Log();
  const auto looked = Look();
  const std::map<std::string, v1::Lease>& live = looked.first;
  const v1::GetPoolInfoResponse& info = looked.second;
  EXPECT_FALSE(live.count(held.lease().id())) << "the expired lease is back";
  EXPECT_EQ(live.size(), served.ok() ? 1u : 0u);
  EXPECT_EQ(info.used_bytes(), served.ok() ? kTotal : 0u);
}

}  // namespace
}  // namespace physpool::testing
