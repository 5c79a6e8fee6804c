// SPDX-License-Identifier: Apache-2.0
// One tenant floods the daemon; another is served throughout.
//
// alice holds the whole first segment and keeps as many requests waiting for
// it as she may (more threads than wait.max_waiters_per_tenant, each
// re-sending as soon as it is answered), holds Watch streams up to
// watch.max_streams_per_tenant and keeps opening more, and has one Watch
// reader that stops reading. bob meanwhile allocates, renews and releases in
// the second segment (a window disjoint from alice's): every one of his calls
// must succeed — none held back by alice's starving waiters ("served
// first"), none over a cap, none DEADLINE_EXCEEDED. The stalled reader must
// get a final OVERFLOW event and RESOURCE_EXHAUSTED. bob's latencies are
// printed, not asserted.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint32_t kMaxWaiters = 8, kMaxStreams = 4, kMaxQueue = 16;

bool Eventually(const std::function<bool()>& pred, double seconds = 30) {
  const auto end =
      Clock::now() + std::chrono::milliseconds(static_cast<int>(seconds * 1e3));
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// Latencies of one kind of call, in microseconds.
struct Latencies {
  std::mutex mu;
  std::vector<double> us;
  void Add(Clock::duration d) {
    std::lock_guard<std::mutex> l(mu);
    us.push_back(std::chrono::duration<double, std::micro>(d).count());
  }
  std::string Summary(const char* name) {
    std::lock_guard<std::mutex> l(mu);
    if (us.empty()) return absl::StrCat(name, ": none\n");
    std::vector<double> s = us;
    std::sort(s.begin(), s.end());
    auto at = [&](double q) {
      return s[std::min(s.size() - 1, static_cast<size_t>(q * s.size()))];
    };
    return absl::StrFormat(
        "%-9s n=%-6zu p50=%8.0f us  p90=%8.0f us  p99=%8.0f us  max=%8.0f us\n",
        name, s.size(), at(0.5), at(0.9), at(0.99), s.back());
  }
};

TEST(FloodTest, OneTenantsFloodDoesNotStopAnothersService) {
  DaemonOptions o;
  o.max_waiters_per_tenant = kMaxWaiters;
  o.max_watch_streams_per_tenant = kMaxStreams;
  o.max_watch_queue = kMaxQueue;
  o.starvation_ms = 200;  // alice's waiters starve early and stay starving
  o.expiring_warning_seconds = 1;
  auto started = Daemon::Start(o);
  ASSERT_TRUE(started.ok()) << started.status();
  Daemon& d = **started;
  auto pool = d.Pool();
  auto admin = d.Admin();

  v1::GetPoolInfoResponse info;
  auto ctx = Ctx(kRoot);
  ASSERT_TRUE(pool->GetPoolInfo(ctx.get(), {}, &info).ok());
  ASSERT_EQ(info.segments_size(), 2);
  const v1::SegmentInfo& a_seg = info.segments(0);  // 16 MiB, NUMA 0: alice
  const v1::SegmentInfo& b_seg = info.segments(1);  // 8 MiB, NUMA 1: bob
  ASSERT_EQ(b_seg.numa_node(), 1);
  auto in = [](const v1::SegmentInfo& s, v1::AllocateRequest* r) {
    r->set_low(s.iova());
    r->set_high(s.iova() + s.bytes());
  };

  // alice takes all of her segment.
  v1::AllocateRequest fill;
  fill.set_bytes(a_seg.bytes());
  in(a_seg, &fill);
  fill.set_ttl_seconds(600);
  v1::AllocateResponse filled;
  ctx = Ctx(kAlice);
  ASSERT_TRUE(pool->Allocate(ctx.get(), fill, &filled).ok());

  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;

  // --- alice: waiting requests, more threads than she may have waiting.
  std::atomic<int64_t> waited_out{0}, waiter_cap{0}, waiter_other{0};
  std::mutex other_mu;
  std::vector<std::string> others;  // unexpected answers, alice and bob
  auto note_other = [&](const std::string& who, const grpc::Status& s) {
    std::lock_guard<std::mutex> l(other_mu);
    if (others.size() < 20)
      others.push_back(
          absl::StrCat(who, ": ", s.error_code(), " ", s.error_message()));
  };
  for (uint32_t t = 0; t < kMaxWaiters + 4; ++t) {
    threads.emplace_back([&, t] {
      auto p = d.Pool();
      v1::AllocateRequest req;
      req.set_bytes(64 * 1024);
      in(a_seg, &req);
      if (t % 2) {
        req.set_numa_node(0);
        req.set_numa_strict(true);
      }
      req.set_may_wait(true);
      while (!stop) {
        v1::AllocateResponse resp;
        auto c = Ctx(kAlice, 1.5);
        const grpc::Status s = p->Allocate(c.get(), req, &resp);
        if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
          ++waited_out;
        } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
                   absl::StrContains(s.error_message(),
                                     "wait.max_waiters_per_tenant")) {
          ++waiter_cap;
        } else {
          ++waiter_other;
          note_other("alice waiter", s);
        }
      }
    });
  }

  // --- alice: Watch streams. Three readers and one stalled reader hold the
  // cap; a thread keeps opening more.
  std::atomic<int64_t> events_read{0};
  std::vector<std::unique_ptr<grpc::ClientContext>> watch_ctxs;
  for (uint32_t i = 0; i + 1 < kMaxStreams; ++i) {
    watch_ctxs.push_back(Ctx(kAlice, 600));
    grpc::ClientContext* c = watch_ctxs.back().get();
    auto reader =
        std::shared_ptr<grpc::ClientReader<v1::LeaseEvent>>(pool->Watch(c, {}));
    reader->WaitForInitialMetadata();
    threads.emplace_back([&, reader, i] {
      v1::LeaseEvent e;
      while (reader->Read(&e)) {
        if (i == 0) ++events_read;
        if (e.kind() == v1::LeaseEvent::OVERFLOW) {
          note_other("a reading Watch stream",
                     grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                  "got OVERFLOW"));
        }
      }
      const grpc::Status s = reader->Finish();
      if (s.error_code() != grpc::StatusCode::CANCELLED)
        note_other("a reading Watch stream ended", s);
    });
  }
  // The stalled reader: its own connection, a small flow-control window and
  // no BDP probing, so that the daemon's writes to it block soon.
  grpc::ChannelArguments stalled_args;
  stalled_args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  stalled_args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  stalled_args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto stalled_pool = v1::Pool::NewStub(grpc::CreateCustomChannel(
      "unix:" + d.socket(), grpc::InsecureChannelCredentials(), stalled_args));
  auto stalled_ctx = Ctx(kAlice, 600);
  auto stalled = stalled_pool->Watch(stalled_ctx.get(), {});
  stalled->WaitForInitialMetadata();
  std::atomic<int64_t> stream_cap{0}, stream_other{0};
  threads.emplace_back([&] {
    auto p = d.Pool();
    while (!stop) {
      auto c = Ctx(kAlice, 5);
      auto r = p->Watch(c.get(), {});
      v1::LeaseEvent e;
      const bool got = r->Read(&e);
      const grpc::Status s = r->Finish();
      if (!got && s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
          absl::StrContains(s.error_message(),
                            "watch.max_streams_per_tenant")) {
        ++stream_cap;
      } else {
        ++stream_other;
        note_other(got ? "a Watch stream over the cap got an event"
                       : "a Watch stream over the cap",
                   s);
      }
    }
  });

  // --- alice: events for her streams. A lease of 1 s renewed with a TTL of
  // 1 s is due its EXPIRING warning (1 s before expiry) at once: one event
  // per Renew.
  std::atomic<int64_t> renews_for_events{0};
  threads.emplace_back([&] {
    auto p = d.Pool();
    std::string id;
    while (!stop) {
      if (id.empty()) {
        v1::AllocateRequest req;
        req.set_bytes(4096);
        in(b_seg, &req);  // not where alice waits
        req.set_ttl_seconds(1);
        v1::AllocateResponse resp;
        auto c = Ctx(kAlice, 10);
        const grpc::Status s = p->Allocate(c.get(), req, &resp);
        if (!s.ok()) {
          note_other("alice's event lease", s);
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
        id = resp.lease().id();
      }
      v1::RenewRequest req;
      req.set_lease_id(id);
      req.set_ttl_seconds(1);
      v1::RenewResponse resp;
      auto c = Ctx(kAlice, 10);
      const grpc::Status s = p->Renew(c.get(), req, &resp);
      if (s.ok()) {
        ++renews_for_events;
      } else {
        id.clear();  // it expired (a slow turn): take another
      }
    }
  });

  // --- bob: his own Watch stream (caps are per tenant) and his loop.
  auto bob_watch_ctx = Ctx(kBob, 600);
  auto bob_watch = pool->Watch(bob_watch_ctx.get(), {});
  bob_watch->WaitForInitialMetadata();
  Latencies alloc_lat, renew_lat, release_lat;
  std::atomic<int64_t> bob_ok{0}, bob_failed{0};
  std::atomic<int64_t> bob_held_back{0}, bob_deadline{0}, bob_capped{0};
  std::vector<std::thread> bobs;
  for (int t = 0; t < 2; ++t) {
    bobs.emplace_back([&, t] {
      std::mt19937_64 r(t);
      auto p = d.Pool();
      std::vector<std::string> owned;
      auto check = [&](const grpc::Status& s, const char* what) {
        if (s.ok()) {
          ++bob_ok;
          return true;
        }
        ++bob_failed;
        if (absl::StrContains(s.error_message(), "served first"))
          ++bob_held_back;
        if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
          ++bob_deadline;
        if (absl::StrContains(s.error_message(), "max_")) ++bob_capped;
        note_other(absl::StrCat("bob ", what), s);
        return false;
      };
      while (!stop) {
        const int op = r() % 3;
        if (owned.size() < 2 || (op == 0 && owned.size() < 6)) {
          v1::AllocateRequest req;
          req.set_bytes(4096 * (1 + r() % 32));
          in(b_seg, &req);
          switch (r() % 3) {
            case 0:
              break;
            case 1:
              req.set_numa_node(1);
              req.set_numa_strict(true);
              break;
            case 2:
              req.set_numa_node(1);
              break;
          }
          req.set_may_wait(r() % 3 == 0);
          req.set_ttl_seconds(60);
          v1::AllocateResponse resp;
          auto c = Ctx(kBob, 10);
          const auto t0 = Clock::now();
          const grpc::Status s = p->Allocate(c.get(), req, &resp);
          alloc_lat.Add(Clock::now() - t0);
          if (check(s, "Allocate")) owned.push_back(resp.lease().id());
        } else if (op == 1) {
          v1::RenewRequest req;
          req.set_lease_id(owned[r() % owned.size()]);
          v1::RenewResponse resp;
          auto c = Ctx(kBob, 10);
          const auto t0 = Clock::now();
          const grpc::Status s = p->Renew(c.get(), req, &resp);
          renew_lat.Add(Clock::now() - t0);
          check(s, "Renew");
        } else {
          const size_t i = r() % owned.size();
          v1::ReleaseRequest req;
          req.set_lease_id(owned[i]);
          v1::ReleaseResponse resp;
          auto c = Ctx(kBob, 10);
          const auto t0 = Clock::now();
          const grpc::Status s = p->Release(c.get(), req, &resp);
          release_lat.Add(Clock::now() - t0);
          if (check(s, "Release")) {
            EXPECT_TRUE(resp.released());
            owned[i] = owned.back();
            owned.pop_back();
          }
        }
      }
      for (const std::string& id : owned) {
        v1::ReleaseRequest req;
        req.set_lease_id(id);
        v1::ReleaseResponse resp;
        auto c = Ctx(kBob, 10);
        check(p->Release(c.get(), req, &resp), "Release");
      }
    });
  }

  // Until enough happened: bob served many times while alice's waiters
  // starved, the waiter cap was full, streams were refused, and far more
  // events went out than the stalled reader's window and queue hold.
  uint32_t most_waiting = 0, most_streams = 0;
  const bool enough = Eventually(
      [&] {
        v1::GetStatsResponse st;
        auto c = Ctx(kRoot, 10);
        if (admin->GetStats(c.get(), {}, &st).ok()) {
          most_waiting = std::max(most_waiting, st.waiting_requests());
          most_streams = std::max(most_streams, st.watch_streams());
        }
        return bob_ok >= 1500 && events_read >= 3000 && waited_out >= 16 &&
               waiter_cap > 0 && stream_cap > 0 && most_waiting == kMaxWaiters;
      },
      120);
  stop = true;
  for (auto& t : bobs) t.join();
  const int64_t events_sent = events_read;

  // The stalled reader now reads: what was queued, then OVERFLOW, then the
  // end with RESOURCE_EXHAUSTED.
  // (Bounded: a daemon that never ends the stream is cancelled after 30 s.)
  std::atomic<int64_t> stalled_events{0};
  std::atomic<bool> stalled_done{false};
  v1::LeaseEvent last;
  grpc::Status stalled_end;
  std::thread stalled_reader([&] {
    v1::LeaseEvent e;
    while (stalled->Read(&e)) {
      ++stalled_events;
      last = e;
    }
    stalled_end = stalled->Finish();
    stalled_done = true;
  });
  if (!Eventually([&] { return stalled_done.load(); }, 30)) {
    ADD_FAILURE() << "the stalled reader's stream did not end after "
                  << stalled_events << " events: cancelled";
    stalled_ctx->TryCancel();
  }
  stalled_reader.join();
  for (auto& c : watch_ctxs) c->TryCancel();
  bob_watch_ctx->TryCancel();
  const grpc::Status bob_watch_end = bob_watch->Finish();
  for (auto& t : threads) t.join();

  std::printf(
      "alice: %lld waits ran out, %lld refused by wait.max_waiters_per_tenant, "
      "%lld other answers; Watch streams over the cap refused %lld times "
      "(%lld other); %lld events sent to each stream (%lld renewals); the "
      "stalled reader got %lld and then %s\n",
      (long long)waited_out, (long long)waiter_cap, (long long)waiter_other,
      (long long)stream_cap, (long long)stream_other, (long long)events_sent,
      (long long)renews_for_events, (long long)stalled_events.load(),
      v1::LeaseEvent::Kind_Name(last.kind()).c_str());
  std::printf("daemon: at most %u waiting requests, %u Watch streams\n",
              most_waiting, most_streams);
  std::printf("bob: %lld calls OK, %lld failed\n%s%s%s", (long long)bob_ok,
              (long long)bob_failed, alloc_lat.Summary("Allocate").c_str(),
              renew_lat.Summary("Renew").c_str(),
              release_lat.Summary("Release").c_str());
  for (const std::string& s : others)
    std::printf("unexpected: %s\n", s.c_str());

  EXPECT_TRUE(enough) << "the flood did not reach every cap";
  // bob was served throughout.
  EXPECT_EQ(bob_failed, 0);
  EXPECT_EQ(bob_held_back, 0) << "bob was held back by alice's waiters";
  EXPECT_EQ(bob_deadline, 0);
  EXPECT_EQ(bob_capped, 0) << "bob hit a cap that is alice's";
  EXPECT_GE(bob_ok, 1500);
  EXPECT_EQ(bob_watch_end.error_code(), grpc::StatusCode::CANCELLED)
      << bob_watch_end.error_message();
  // The caps held and said which.
  EXPECT_GT(waiter_cap, 0);
  EXPECT_EQ(waiter_other, 0);
  EXPECT_LE(most_waiting, kMaxWaiters);
  EXPECT_GT(stream_cap, 0);
  EXPECT_EQ(stream_other, 0);
  EXPECT_LE(most_streams, kMaxStreams + 1);  // alice's and bob's one
  // The stalled reader: dropped events, a final OVERFLOW, RESOURCE_EXHAUSTED.
  EXPECT_EQ(last.kind(), v1::LeaseEvent::OVERFLOW);
  EXPECT_LT(stalled_events, events_sent) << "nothing was dropped";
  EXPECT_EQ(stalled_end.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << stalled_end.error_message();
  EXPECT_THAT(stalled_end.error_message(),
              HasSubstr("watch.max_queued_events"));
  // Nothing left behind: no waiter, no stream, bob's memory free again.
  v1::GetStatsResponse st;
  EXPECT_TRUE(Eventually([&] {
    auto c = Ctx(kRoot, 10);
    st.Clear();
    return admin->GetStats(c.get(), {}, &st).ok() &&
           st.waiting_requests() == 0 && st.watch_streams() == 0;
  })) << "waiting "
      << st.waiting_requests() << ", streams " << st.watch_streams();
  EXPECT_TRUE(Eventually([&] {
    v1::GetPoolInfoResponse i;
    auto c = Ctx(kRoot, 10);
    return pool->GetPoolInfo(c.get(), {}, &i).ok() &&
           i.segments(1).free_bytes() + 4096 >= b_seg.bytes();  // alice's one
  }));
  if (HasFailure()) {
    std::string log;
    for (absl::string_view line : absl::StrSplit(d.Log(), '\n')) {
      if (!absl::StrContains(line, "level=debug"))
        absl::StrAppend(&log, line, "\n");
    }
    std::fprintf(stderr, "physpoold log (without debug lines):\n%s",
                 log.c_str());
  }
}

}  // namespace
}  // namespace physpool::testing
