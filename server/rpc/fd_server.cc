// SPDX-License-Identifier: Apache-2.0
#include "server/rpc/fd_server.h"

#include <linux/sockios.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "server/core/log.h"
#include "server/memory/holders.h"

namespace physpool::server {
namespace {

constexpr size_t kMaxLine = 4096;
constexpr size_t kMaxReading = 512;  // connections the loop reads at once

void SendAnswer(int conn, const std::string& line,
                const std::vector<int>& fds) {
  iovec iov = {const_cast<char*>(line.data()), line.size()};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  if (sendmsg(conn, &msg, MSG_NOSIGNAL) < 0) {
    Log(LogLevel::kWarn, "fd socket: send failed",
        {F("error", std::strerror(errno))});
  }
}

}  // namespace

absl::Status FdServer::Start(const std::string& path,
                             const FdSocketOptions& options) {
  options_ = options;
  path_ = path;
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("fd socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  unlink(path.c_str());  // the gRPC socket's check already ruled out a
                         // live daemon in the same runtime dir
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0 ||
      bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listen_fd_, 128) != 0) {
    const int err = errno;
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = -1;
    return absl::UnavailableError(
        absl::StrCat("fd socket ", path, ": ", std::strerror(err)));
  }
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  {
    absl::MutexLock l(&mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
  for (int i = 0; i < kWorkers; ++i) workers_.emplace_back([this] { Work(); });
  return absl::OkStatus();
}

void FdServer::Stop() {
  if (listen_fd_ < 0) return;
  const uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof(one));
  thread_.join();  // the loop closes the connections still reading
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    for (int fd : in_flight_) shutdown(fd, SHUT_RDWR);
    cv_.SignalAll();
  }
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  std::vector<Parked> parked;
  {
    absl::MutexLock l(&mu_);
    parked.swap(parked_);
  }
  for (Parked& p : parked) Finish(p.conn, "");
  for (;;) {
    Conn c;
    {
      absl::MutexLock l(&mu_);
      if (queue_.empty()) break;
      c = std::move(queue_.front());
      queue_.pop_front();
    }
    Finish(c, ErrorLine(absl::UnavailableError("physpoold is stopping")));
  }
  close(listen_fd_);
  close(stop_fd_);
  close(wake_fd_);
  listen_fd_ = stop_fd_ = wake_fd_ = -1;
  unlink(path_.c_str());
}

void FdServer::Loop() {
  std::vector<Conn> conns;  // reading their request line
  std::vector<pollfd> p;
  for (;;) {
    // Past kMaxReading connections, new ones wait in the backlog.
    p.assign({{stop_fd_, POLLIN, 0},
              {wake_fd_, POLLIN, 0},
              {conns.size() < kMaxReading ? listen_fd_ : -1, POLLIN, 0}});
    absl::Time first = absl::InfiniteFuture();
    for (const Conn& c : conns) {
      p.push_back({c.fd, POLLIN, 0});
      first = std::min(first, c.deadline);
    }
    int timeout_ms = -1;
    if (first != absl::InfiniteFuture()) {
      timeout_ms = static_cast<int>(std::max<int64_t>(
          0, absl::ToInt64Milliseconds(
                 absl::Ceil(first - absl::Now(), absl::Milliseconds(1)))));
    }
    bool parked;
    {
      absl::MutexLock l(&mu_);
      parked = !parked_.empty() || !unread_.empty();
    }
    if (parked && (timeout_ms < 0 || timeout_ms > 100)) timeout_ms = 100;
    if (poll(p.data(), p.size(), timeout_ms) < 0 && errno != EINTR) break;
    if (p[0].revents) break;
    if (p[1].revents) {
      uint64_t n;
      (void)!read(wake_fd_, &n, sizeof(n));
      parked = true;
    }
    if (parked) CheckParked();
    const absl::Time now = absl::Now();
    // Back to front: a finished connection is swapped out.
    for (size_t i = conns.size(); i-- > 0;) {
      Conn& c = conns[i];
      bool done;
      if (p[i + 3].revents) {
        done = ReadSome(c);
      } else {
        done = now >= c.deadline;
        if (done) {
          Finish(c, ErrorLine(absl::DeadlineExceededError(absl::StrCat(
                        "the request line did not arrive within ",
                        absl::FormatDuration(options_.request_deadline),
                        " of connecting"))));
        }
      }
      if (done) {
        if (i + 1 != conns.size()) c = std::move(conns.back());
        conns.pop_back();
      }
    }
    if (p[2].revents) {
      for (;;) {
        const int fd =
            accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
          // Out of descriptors: the backlog waits (no busy loop).
          if (errno == EMFILE || errno == ENFILE) {
            absl::SleepFor(absl::Milliseconds(10));
          }
          break;
        }
        Admit(fd, &conns);
      }
    }
  }
  for (Conn& c : conns) Finish(c, "");
}

bool FdServer::ReadSome(Conn& c) {
  char buf[512];
  for (;;) {
    const ssize_t n = read(c.fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
    if (n > 0) c.buf.append(buf, n);
    if (c.buf.find('\n') != std::string::npos) {
      absl::MutexLock l(&mu_);
      queue_.push_back(std::move(c));
      cv_.Signal();
      return true;
    }
    if (n <= 0 || c.buf.size() > kMaxLine) {
      Finish(c, ErrorLine(absl::InvalidArgumentError(
                    absl::StrCat("a request is one line of at most ", kMaxLine,
                                 " bytes ending in \\n"))));
      return true;
    }
  }
}

void FdServer::Work() {
  for (;;) {
    Conn c;
    {
      absl::MutexLock l(&mu_);
      while (!stopping_ && queue_.empty()) cv_.Wait(&mu_);
      if (stopping_) return;
      c = std::move(queue_.front());
      queue_.pop_front();
      in_flight_.insert(c.fd);
    }
    Serve(c);
  }
}

namespace {
// Whether the peer has taken everything sent on `fd` (the kernel frees a
// unix socket's sent buffers as the receiver reads them) or is gone.
bool Delivered(int fd) {
  int unread = 0;
  if (ioctl(fd, SIOCOUTQ, &unread) == 0 && unread == 0) return true;
  pollfd p = {fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}
}  // namespace

void FdServer::Serve(Conn& c) {
  std::string line = c.buf.substr(0, c.buf.find('\n'));
  std::vector<int> fds;
  std::vector<std::shared_ptr<void>> pins;
  std::string answer;
  if (c.peer.pid == 0 && manager_->views_enabled() &&
      line.rfind("backing ", 0) == 0) {
    // SO_PEERCRED gives pid 0 for a peer in a pid namespace this one
    // cannot see: nor could the quarantine, so no view goes there.
    answer = ErrorLine(absl::FailedPreconditionError(
        "physpoold cannot see your process (another pid namespace), so it "
        "could not tell when you stop mapping the lease: run the tenant in "
        "the daemon's pid namespace (Kubernetes: the daemon with hostPID)"));
  } else {
    answer = Answer(line, &fds, &pins, c.peer.pid);
  }
  Log(LogLevel::kInfo, "fd socket",
      {F("pid", c.peer.pid), F("uid", c.peer.uid),
       F("request", line.substr(0, line.find(' ', line.find(' ') + 1))),
       F("answer", answer.substr(0, answer.size() - 1)), F("fds", fds.size())});
  SendAnswer(c.fd, answer, fds);
  for (int fd : fds) close(fd);
  // A view sent stays pinned until the peer has read it: in flight it is
  // in no process's /proc. A prompt peer reads at once; a slow one is
  // parked for the loop to look at.
  bool delivered = pins.empty() || Delivered(c.fd);
  for (int i = 0; !delivered && i < 20; ++i) {
    pollfd p = {c.fd, POLLRDHUP, 0};
    poll(&p, 1, 5);
    delivered = Delivered(c.fd);
  }
  {
    absl::MutexLock l(&mu_);
    in_flight_.erase(c.fd);
    if (!delivered && !stopping_) {
      const std::vector<std::string> words =
          absl::StrSplit(line, ' ', absl::SkipEmpty());
      parked_.push_back({std::move(c), std::move(pins),
                         words.size() > 1 ? words[1] : "",
                         absl::Now() + options_.answer_deadline});
      const uint64_t one = 1;  // the loop watches it from now on
      (void)!write(wake_fd_, &one, sizeof(one));
      return;
    }
  }
  Finish(c, "");
}

void FdServer::CheckParked() {
  std::vector<Parked> parked;
  {
    absl::MutexLock l(&mu_);
    parked.swap(parked_);
    // Peers that never read a view: gone means its queue went with it.
    for (auto it = unread_.begin(); it != unread_.end();) {
      if (ProcessStart(it->first.first) != it->first.second) {
        it = unread_.erase(it);
      } else {
        ++it;
      }
    }
  }
  const absl::Time now = absl::Now();
  std::vector<Parked> waiting;
  for (Parked& p : parked) {
    if (Delivered(p.conn.fd)) {
      Finish(p.conn, "");
    } else if (now >= p.deadline) {
      // Closed so that it no longer holds its uid's slot; what it was sent
      // may still be in its queue: the view stays pinned while it lives.
      Log(LogLevel::kWarn,
          "fd socket: the answer was not read in time; connection closed, "
          "the view stays held while the peer lives",
          {F("pid", p.conn.peer.pid), F("uid", p.conn.peer.uid),
           F("lease", p.lease),
           F("answer_deadline_ms",
             absl::ToInt64Milliseconds(options_.answer_deadline))});
      if (std::optional<uint64_t> start = ProcessStart(p.conn.peer.pid)) {
        absl::MutexLock l(&mu_);
        auto& pins = unread_[{p.conn.peer.pid, *start}];
        if (!p.pins.empty() && !pins.count(p.lease)) pins[p.lease] = p.pins[0];
      }
      Finish(p.conn, "");
    } else {
      waiting.push_back(std::move(p));
    }
  }
  absl::MutexLock l(&mu_);
  for (Parked& p : waiting) parked_.push_back(std::move(p));
}

void FdServer::Finish(Conn& c, const std::string& answer) {
  if (!answer.empty()) {
    (void)!send(c.fd, answer.data(), answer.size(),
                MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  close(c.fd);
  c.fd = -1;
  absl::MutexLock l(&mu_);
  auto it = open_per_uid_.find(c.peer.uid);
  if (it != open_per_uid_.end() && --it->second == 0) open_per_uid_.erase(it);
}

}  // namespace physpool::server
