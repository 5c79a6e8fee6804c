// SPDX-License-Identifier: Apache-2.0
// The fd socket against slow, silent and greedy peers (docs/vfio.md, "The fd
// socket's trust model"), on the real physpoold: other tenants are answered
// as on an idle socket, a request has one deadline for the whole line, a
// uid's open connections are capped, and SIGTERM does not wait on a client.
// Latencies are printed; asserted only against generous bounds.
#include "client/fd_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

// A connected, blocking unix socket to `path`, or -1.
int Dial(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// What the daemon sends before closing (within `wait`), "" if nothing.
std::string ReadAll(int fd, absl::Duration wait) {
  std::string out;
  const absl::Time until = absl::Now() + wait;
  for (;;) {
    pollfd p = {fd, POLLIN, 0};
    const int ms = static_cast<int>(
        std::max<int64_t>(0, absl::ToInt64Milliseconds(until - absl::Now())));
    if (poll(&p, 1, ms) <= 0) break;
    char buf[256];
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, n);
  }
  return out;
}

struct Stats {
  absl::Duration p50, max;
};

Stats Summarize(std::vector<absl::Duration> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.back()};
}

class FdSocketTest : public ::testing::Test {
 protected:
  void StartDaemon(const std::string& access) {
    DaemonOptions o;
    o.fd_socket_access = access;
    auto d = Daemon::Start(o);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    fds_ = daemon_->socket() + ".fds";
    auto pool = daemon_->Pool();
    v1::AllocateRequest req;
    req.set_bytes(4096);
    req.set_ttl_seconds(600);
    v1::AllocateResponse resp;
    auto ctx = Ctx(kAlice);
    ASSERT_TRUE(pool->Allocate(ctx.get(), req, &resp).ok());
    lease_ = resp.lease().id();
  }

  // One backing request of alice's lease; its latency.
  absl::Duration TimedRequest() {
    const absl::Time start = absl::Now();
    auto a = client_internal::FdRequest(
        fds_, absl::StrCat("backing ", lease_, " ", kAlice), absl::Seconds(10));
    const absl::Duration took = absl::Now() - start;
    EXPECT_TRUE(a.ok()) << a.status();
    if (a.ok()) {
      EXPECT_EQ(a->fds.size(), 1u);
      for (int fd : a->fds) close(fd);
    }
    return took;
  }

  std::unique_ptr<Daemon> daemon_;
  std::string fds_, lease_;
};

TEST_F(FdSocketTest, SlowAndSilentPeersDoNotDelayOthers) {
  // 16 test connections plus the measured ones, all of this uid.
  StartDaemon("{max_connections_per_uid: 64}");
  std::vector<absl::Duration> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(TimedRequest());

  // 8 silent peers and 8 that drip one byte every 0.5 s, never ending the
  // line; each reconnects when the daemon cuts it off (the deadline).
  std::atomic<bool> stop{false};
  std::atomic<int> cut_off{0};
  std::thread load([&] {
    std::vector<int> conns(16, -1);
    absl::Time next_drip = absl::Now();
    while (!stop) {
      const bool drip = absl::Now() >= next_drip;
      if (drip) next_drip += absl::Milliseconds(500);
      for (size_t i = 0; i < conns.size(); ++i) {
        if (conns[i] >= 0) {
          pollfd p = {conns[i], POLLIN, 0};
          if (poll(&p, 1, 0) > 0) {  // an answer or EOF: cut off
            close(conns[i]);
            conns[i] = -1;
            ++cut_off;
          }
        }
        if (conns[i] < 0) conns[i] = Dial(fds_);
        if (drip && i >= 8 && conns[i] >= 0) {
          (void)!send(conns[i], "b", 1, MSG_NOSIGNAL);
        }
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    for (int fd : conns) close(fd);
  });
  absl::SleepFor(absl::Milliseconds(300));
  // Spread over more than one request deadline (2 s): the measurement sees
  // the peers connected, dripping and being cut off and replaced.
  std::vector<absl::Duration> loaded;
  for (int i = 0; i < 30; ++i) {
    loaded.push_back(TimedRequest());
    absl::SleepFor(absl::Milliseconds(100));
  }
  stop = true;
  load.join();

  const Stats a = Summarize(idle), b = Summarize(loaded);
  std::printf(
      "fd request latency, idle socket: p50 %s max %s (%zu requests)\n"
      "fd request latency, 8 dripping + 8 silent peers: p50 %s max %s (%zu "
      "requests; peers cut off at the deadline: %d)\n",
      absl::FormatDuration(a.p50).c_str(), absl::FormatDuration(a.max).c_str(),
      idle.size(), absl::FormatDuration(b.p50).c_str(),
      absl::FormatDuration(b.max).c_str(), loaded.size(), cut_off.load());
  EXPECT_LT(b.max, absl::Seconds(1));
  EXPECT_GT(cut_off.load(), 0) << "the peers were never cut off";
}

TEST_F(FdSocketTest, ARequestLineHasOneDeadline) {
  StartDaemon("{request_deadline_ms: 1000}");
  const int fd = Dial(fds_);
  ASSERT_GE(fd, 0);
  const absl::Time start = absl::Now();
  std::string answer;
  // One byte every 200 ms: each read() is quick, the line never ends.
  while (absl::Now() - start < absl::Seconds(5)) {
    if (send(fd, "b", 1, MSG_NOSIGNAL) != 1) break;
    answer = ReadAll(fd, absl::Milliseconds(200));
    if (!answer.empty()) break;
  }
  const absl::Duration took = absl::Now() - start;
  close(fd);
  std::printf("a dripping peer was cut off after %s: %s",
              absl::FormatDuration(took).c_str(), answer.c_str());
  EXPECT_EQ(answer.rfind("error DEADLINE_EXCEEDED ", 0), 0u) << answer;
  EXPECT_GE(took, absl::Milliseconds(900));
  EXPECT_LT(took, absl::Seconds(3));
}

TEST_F(FdSocketTest, OpenConnectionsPerUidAreCapped) {
  StartDaemon("{max_connections_per_uid: 4}");
  std::vector<int> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(Dial(fds_));
    ASSERT_GE(held.back(), 0);
  }
  absl::SleepFor(absl::Milliseconds(100));  // all four admitted
  const int extra = Dial(fds_);
  ASSERT_GE(extra, 0);
  const std::string answer = ReadAll(extra, absl::Seconds(2));
  close(extra);
  std::printf("the connection over the cap: %s", answer.c_str());
  EXPECT_EQ(answer.rfind("error RESOURCE_EXHAUSTED ", 0), 0u) << answer;
  EXPECT_NE(answer.find("max_connections_per_uid"), std::string::npos);
  // A connection closed frees its place.
  close(held.back());
  held.pop_back();
  absl::StatusOr<client_internal::FdAnswer> a;
  for (int i = 0; i < 50; ++i) {
    a = client_internal::FdRequest(
        fds_, absl::StrCat("backing ", lease_, " ", kAlice), absl::Seconds(5));
    if (a.ok()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(a.ok()) << a.status();
  for (int fd : a->fds) close(fd);
  for (int fd : held) close(fd);
  EXPECT_NE(daemon_->Log().find("fd socket connection refused"),
            std::string::npos);
}

TEST_F(FdSocketTest, SigtermDoesNotWaitOnClients) {
  StartDaemon("{max_connections_per_uid: 64, request_deadline_ms: 30000}");
  std::vector<int> silent;
  for (int i = 0; i < 8; ++i) {
    silent.push_back(Dial(fds_));
    ASSERT_GE(silent.back(), 0);
  }
  const int dripping = Dial(fds_);
  ASSERT_EQ(send(dripping, "back", 4, MSG_NOSIGNAL), 4);
  absl::SleepFor(absl::Milliseconds(200));
  const absl::Time start = absl::Now();
  const int code = daemon_->Stop();
  const absl::Duration took = absl::Now() - start;
  std::printf("SIGTERM with 9 idle fd socket clients: exit %d after %s\n", code,
              absl::FormatDuration(took).c_str());
  EXPECT_EQ(code, 0);
  EXPECT_LT(took, absl::Seconds(5));
  for (int fd : silent) close(fd);
  close(dripping);
}

}  // namespace
}  // namespace physpool::testing
