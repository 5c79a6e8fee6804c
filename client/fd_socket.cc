// SPDX-License-Identifier: Apache-2.0
#include "client/fd_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace physpool::client_internal {
namespace {

constexpr int kMaxFds = 253;

absl::Status Unavailable(const std::string& path, const char* step) {
  return absl::UnavailableError(
      absl::StrCat("fd socket ", path, ": ", step, ": ", std::strerror(errno)));
}

absl::Status Late(const std::string& path, const char* step,
                  absl::Duration timeout) {
  return absl::DeadlineExceededError(
      absl::StrCat("fd socket ", path, ": ", step, ": no answer within ",
                   absl::FormatDuration(timeout)));
}

// SO_SNDTIMEO bounds connect (a full backlog) and send on a unix socket.
void SetSendTimeout(int fd, absl::Duration left) {
  left = std::max(left, absl::Milliseconds(1));
  timeval tv = absl::ToTimeval(left);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

absl::StatusCode CodeNamed(absl::string_view name) {
  for (int c = 0; c <= 16; ++c) {
    const auto code = static_cast<absl::StatusCode>(c);
    if (absl::StatusCodeToString(code) == name) return code;
  }
  return absl::StatusCode::kUnknown;
}

}  // namespace

absl::StatusOr<FdAnswer> FdRequest(const std::string& path,
                                   const std::string& request,
                                   absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::FailedPreconditionError(
        "the daemon has no fd socket (listen.fd_socket)");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Unavailable(path, "socket");
  SetSendTimeout(fd, deadline - absl::Now());
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    absl::Status s = errno == EAGAIN || errno == EINPROGRESS
                         ? Late(path, "connect", timeout)
                         : Unavailable(path, "connect");
    close(fd);
    return s;
  }
  const std::string line = request + "\n";
  SetSendTimeout(fd, deadline - absl::Now());
  if (send(fd, line.data(), line.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(line.size())) {
    absl::Status s = errno == EAGAIN ? Late(path, "send", timeout)
                                     : Unavailable(path, "send");
    close(fd);
    return s;
  }
  std::string text;
  FdAnswer answer;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * kMaxFds));
  bool late = false;
  while (text.find('\n') == std::string::npos) {
    const absl::Duration left = deadline - absl::Now();
    pollfd p = {fd, POLLIN, 0};
    const int ready = left <= absl::ZeroDuration()
                          ? 0
                          : poll(&p, 1,
                                 static_cast<int>(absl::ToInt64Milliseconds(
                                     absl::Ceil(left, absl::Milliseconds(1)))));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      late = true;
      break;
    }
    char buf[4096];
    iovec iov = {buf, sizeof(buf)};
    msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    const ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    text.append(buf, n);
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const int* fds = reinterpret_cast<const int*>(CMSG_DATA(c));
      answer.fds.insert(answer.fds.end(), fds, fds + count);
    }
  }
  close(fd);
  auto fail = [&answer](absl::Status s) {
    for (int f : answer.fds) close(f);
    return s;
  };
  const size_t nl = text.find('\n');
  if (nl == std::string::npos && late) {
    return fail(Late(path, "receive", timeout));
  }
  if (nl == std::string::npos) {
    return fail(absl::UnavailableError(
        absl::StrCat("fd socket ", path, ": no answer")));
  }
  text.resize(nl);
  std::vector<std::string> words = absl::StrSplit(text, ' ');
  if (words[0] == "error" && words.size() >= 2) {
    const size_t msg_at = text.find(' ', 6);
    return fail(absl::Status(
        CodeNamed(words[1]),
        msg_at == std::string::npos ? "" : text.substr(msg_at + 1)));
  }
  if (words[0] != "ok") {
    return fail(absl::InternalError("fd socket: bad answer: " + text));
  }
  answer.words.assign(words.begin() + 1, words.end());
  return answer;
}

}  // namespace physpool::client_internal
