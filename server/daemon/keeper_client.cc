// SPDX-License-Identifier: Apache-2.0
#include "server/daemon/keeper_client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "util/errno_status.h"

namespace physpool::server {
namespace {

// The longest message: a MAPS answer of 512 mappings, each " <iova>:<bytes>"
// of up to 42 characters (21.5 KB).
constexpr size_t kMaxMessage = 32 << 10;

absl::Status Errno(absl::string_view what, int err) {
  const std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  if (err == EAGAIN || err == EWOULDBLOCK) {
    return absl::DeadlineExceededError(msg);
  }
  return absl::UnavailableError(msg);
}

}  // namespace

bool ValidKeeperName(const std::string& name) {
  if (name.empty() || name.size() > 200) return false;
  for (char c : name) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' &&
        c != '_' && c != ':') {
      return false;
    }
  }
  return true;
}

absl::Status SendKeeperMessage(int sock, const std::string& text, int fd) {
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) return Errno("keeper send", errno);
  return absl::OkStatus();
}

absl::StatusOr<std::string> RecvKeeperMessage(int sock, int* fd) {
  *fd = -1;
  char buf[kMaxMessage];
  iovec iov{buf, sizeof(buf)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  const ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return Errno("keeper receive", errno);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      std::memcpy(fd, CMSG_DATA(c), sizeof(int));
    }
  }
  if (n == 0) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
    return absl::UnavailableError("the keeper closed the connection");
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
    return absl::InvalidArgumentError("keeper message truncated");
  }
  return std::string(buf, n);
}

absl::StatusOr<std::unique_ptr<KeeperClient>> KeeperClient::Connect(
    const std::string& path, absl::Duration wait) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("keeper socket path is empty or long");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const absl::Time deadline = absl::Now() + wait;
  for (;;) {
    const int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock < 0) return Errno("socket", errno);
    timeval tv{5, 0};  // a keeper that stops answering is not waited for
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int err = 0;
    if (connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      int fd = -1;
      absl::StatusOr<std::string> hello = RecvKeeperMessage(sock, &fd);
      if (fd >= 0) close(fd);
      ucred cred{};
      socklen_t len = sizeof(cred);
      if (hello.ok() && absl::StartsWith(*hello, "HELLO ") &&
          getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        return std::unique_ptr<KeeperClient>(
            new KeeperClient(sock, path, hello->substr(6), cred.pid));
      }
      close(sock);
      return absl::UnavailableError(absl::StrCat(
          "the keeper at ", path, " did not greet: ",
          hello.ok() ? *hello : std::string(hello.status().message()),
          " (another uid's keeper, or not a physpool-keeper socket)"));
    }
    err = errno;
    close(sock);
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat(
          "cannot connect to physpool-keeper at ", path, ": ",
          std::strerror(err), "; start `physpool-keeper --socket ", path,
          "` first (docs/vfio.md, \"Restart with isolation on\"), or remove "
          "vfio.keeper from the config (memfd leases are then void at every "
          "restart)"));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

KeeperClient::~KeeperClient() { close(sock_); }

absl::StatusOr<std::string> KeeperClient::Call(const std::string& text,
                                               int fd) {
  absl::MutexLock l(&mu_);
  if (absl::Status s = SendKeeperMessage(sock_, text, fd); !s.ok()) return s;
  int got = -1;
  absl::StatusOr<std::string> reply = RecvKeeperMessage(sock_, &got);
  if (got >= 0) close(got);
  if (!reply.ok()) return reply.status();
  if (*reply == "OK") return std::string();
  if (absl::StartsWith(*reply, "OK ")) return reply->substr(3);
  int err = 0;
  std::vector<std::string> parts =
      absl::StrSplit(*reply, absl::MaxSplits(' ', 2));
  if (parts.size() == 3 && parts[0] == "ERRNO" &&
      absl::SimpleAtoi(parts[1], &err)) {
    // The kernel's answer to the keeper, with its code and errno.
    const absl::Status like = ErrnoStatus("", err);
    absl::Status out(like.code(), "physpool-keeper: " + parts[2]);
    like.ForEachPayload([&out](absl::string_view url, const absl::Cord& p) {
      out.SetPayload(url, p);
    });
    return out;
  }
  return absl::InternalError(absl::StrCat("keeper: ", *reply));
}

absl::Status KeeperClient::Put(const std::string& name, int fd) {
  if (!ValidKeeperName(name)) {
    return absl::InvalidArgumentError("bad keeper name " + name);
  }
  return Call("PUT " + name, fd).status();
}

absl::Status KeeperClient::Drop(const std::string& name) {
  return Call("DROP " + name, -1).status();
}

absl::Status KeeperClient::MapDma(const std::string& container,
                                  const std::string& memfd, uint64_t offset,
                                  uint64_t iova, uint64_t bytes) {
  return Call(absl::StrCat("MAP ", container, " ", memfd, " ", offset, " ",
                           iova, " ", bytes),
              -1)
      .status();
}

absl::StatusOr<uint64_t> KeeperClient::UnmapDma(const std::string& container,
                                                uint64_t iova, uint64_t bytes) {
  absl::StatusOr<std::string> r =
      Call(absl::StrCat("UNMAP ", container, " ", iova, " ", bytes), -1);
  if (!r.ok()) return r.status();
  uint64_t n = 0;
  if (!absl::SimpleAtoi(*r, &n)) {
    return absl::InternalError("keeper: UNMAP answered " + *r);
  }
  return n;
}

absl::StatusOr<std::map<uint64_t, uint64_t>> KeeperClient::Mappings(
    const std::string& container) {
  absl::MutexLock l(&mu_);
  if (absl::Status s = SendKeeperMessage(sock_, "MAPS " + container, -1);
      !s.ok())
    return s;
  std::map<uint64_t, uint64_t> out;
  for (;;) {
    int fd = -1;
    absl::StatusOr<std::string> m = RecvKeeperMessage(sock_, &fd);
    if (fd >= 0) close(fd);
    if (!m.ok()) return m.status();
    if (*m == "END") return out;
    if (!absl::StartsWith(*m, "M")) {
      return absl::InternalError("keeper: unexpected " + *m);
    }
    for (absl::string_view e :
         absl::StrSplit(m->substr(1), ' ', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(e, ':');
      uint64_t iova = 0, bytes = 0;
      if (!absl::SimpleAtoi(kv.first, &iova) ||
          !absl::SimpleAtoi(kv.second, &bytes)) {
        return absl::InternalError("keeper: bad mapping " + std::string(e));
      }
      out[iova] = bytes;
    }
  }
}

absl::StatusOr<std::map<std::string, int>> KeeperClient::List() {
  absl::MutexLock l(&mu_);
  if (absl::Status s = SendKeeperMessage(sock_, "LIST", -1); !s.ok()) return s;
  std::map<std::string, int> out;
  auto fail = [&out](absl::Status s) {
    for (const auto& [name, fd] : out) close(fd);
    return s;
  };
  for (;;) {
    int fd = -1;
    absl::StatusOr<std::string> m = RecvKeeperMessage(sock_, &fd);
    if (!m.ok()) return fail(m.status());
    if (*m == "END") return out;
    if (!absl::StartsWith(*m, "FD ") || fd < 0) {
      if (fd >= 0) close(fd);
      return fail(absl::InternalError("keeper: unexpected " + *m));
    }
    const std::string name = m->substr(3);
    if (auto it = out.find(name); it != out.end()) close(it->second);
    out[name] = fd;
  }
}

}  // namespace physpool::server
