// SPDX-License-Identifier: Apache-2.0
#include "tests/client/socket_proxy.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace physpool::testing {
namespace {

bool Address(const std::string& path, sockaddr_un* addr) {
  *addr = {};
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr->sun_path)) return false;
  std::memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SocketProxy>> SocketProxy::Start(
    const std::string& path, const std::string& target) {
  auto p = std::unique_ptr<SocketProxy>(new SocketProxy);
  p->path_ = path;
  p->target_ = target;
  sockaddr_un addr;
  if (!Address(path, &addr)) return absl::InvalidArgumentError("long path");
  p->listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  unlink(path.c_str());
  if (p->listen_fd_ < 0 ||
      bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
          0 ||
      listen(p->listen_fd_, 16) != 0) {
    return absl::InternalError(std::string("proxy listen: ") +
                               std::strerror(errno));
  }
  p->acceptor_ = std::thread([raw = p.get()] { raw->AcceptLoop(); });
  return p;
}

SocketProxy::~SocketProxy() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  acceptor_.join();
  close(listen_fd_);
  unlink(path_.c_str());
  CutAll();
  std::vector<std::thread> threads;
  {
    absl::MutexLock l(&mu_);
    threads.swap(forwarders_);
  }
  for (std::thread& t : threads) t.join();
}

void SocketProxy::CutAll() {
  absl::MutexLock l(&mu_);
  for (const auto& [client, daemon] : connections_) {
    shutdown(client, SHUT_RDWR);
    shutdown(daemon, SHUT_RDWR);
  }
}

void SocketProxy::AcceptLoop() {
  for (;;) {
    const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR) continue;
      return;  // shut down
    }
    sockaddr_un addr;
    Address(target_, &addr);
    const int daemon = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (daemon < 0 || connect(daemon, reinterpret_cast<sockaddr*>(&addr),
                              sizeof(addr)) != 0) {
      if (daemon >= 0) close(daemon);
      close(client);  // the daemon is down: the client sees it go away
      continue;
    }
    absl::MutexLock l(&mu_);
    if (stopping_) {
      close(client);
      close(daemon);
      return;
    }
    connections_.push_back({client, daemon});
    forwarders_.emplace_back(
        [this, client, daemon] { Forward(client, daemon); });
  }
}

void SocketProxy::Forward(int client, int daemon) {
  char buf[65536];
  for (bool open = true; open;) {
    pollfd fds[2] = {{client, POLLIN, 0}, {daemon, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2 && open; ++i) {
      if (fds[i].revents == 0) continue;
      const int from = fds[i].fd, to = i == 0 ? daemon : client;
      const ssize_t n = read(from, buf, sizeof(buf));
      if (n <= 0) {
        open = false;
      } else if (i == 1 && drop_) {
        // an answer lost on the way
      } else {
        open = WriteAll(to, buf, static_cast<size_t>(n));
      }
    }
  }
  {
    absl::MutexLock l(&mu_);
    connections_.erase(std::find(connections_.begin(), connections_.end(),
                                 std::make_pair(client, daemon)));
  }
  close(client);
  close(daemon);
}

}  // namespace physpool::testing
