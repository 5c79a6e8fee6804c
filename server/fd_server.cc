#include "server/fd_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/log.h"

namespace physpool::server {
namespace {

constexpr size_t kMaxLine = 4096;
constexpr int kMaxFds = 250;  // below the kernel's SCM_MAX_FD (253)

std::string ErrorLine(const absl::Status& s) {
  std::string msg(s.message());
  for (char& c : msg) {
    if (c == '\n') c = ' ';
  }
  return absl::StrCat("error ", absl::StatusCodeToString(s.code()), " ", msg,
                      "\n");
}

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

absl::Status FdServer::Start(const std::string& path) {
  path_ = path;
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("fd socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  unlink(path.c_str());  // the gRPC socket's check already ruled out a
                         // live daemon in the same runtime dir
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0 ||
      bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listen_fd_, 16) != 0) {
    const int err = errno;
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = -1;
    return absl::UnavailableError(
        absl::StrCat("fd socket ", path, ": ", std::strerror(err)));
  }
  chmod(path.c_str(), 0660);
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void FdServer::Stop() {
  if (listen_fd_ < 0) return;
  const uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof(one));
  thread_.join();
  close(listen_fd_);
  close(stop_fd_);
  listen_fd_ = stop_fd_ = -1;
  unlink(path_.c_str());
}

namespace {
// Whether the peer has taken everything sent on `conn` (the kernel frees
// a unix socket's sent buffers as the receiver reads them) or is gone.
bool Delivered(int conn) {
  int unread = 0;
  if (ioctl(conn, SIOCOUTQ, &unread) == 0 && unread == 0) return true;
  pollfd p = {conn, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}
}  // namespace

void FdServer::Loop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(p, 2, parked_.empty() ? -1 : 100) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents) break;
    // Answers whose descriptors the peer has not read yet keep their
    // views pinned (quarantine) until it does or hangs up.
    for (auto it = parked_.begin(); it != parked_.end();) {
      if (Delivered(it->conn)) {
        close(it->conn);
        it = parked_.erase(it);
      } else {
        ++it;
      }
    }
    if (!(p[0].revents & POLLIN)) continue;
    const int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    std::vector<std::shared_ptr<void>> pins = Serve(conn);
    if (pins.empty() || Delivered(conn)) {
      close(conn);
    } else {
      parked_.push_back({conn, std::move(pins)});
    }
  }
  for (const Parked& p : parked_) close(p.conn);
  parked_.clear();
}

std::vector<std::shared_ptr<void>> FdServer::Serve(int conn) {
  timeval tv = {2, 0};
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ucred peer = {};
  socklen_t len = sizeof(peer);
  getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &len);
  std::string line;
  char buf[512];
  while (line.find('\n') == std::string::npos && line.size() <= kMaxLine) {
    const ssize_t n = read(conn, buf, sizeof(buf));
    if (n <= 0) break;
    line.append(buf, n);
  }
  std::vector<int> fds;
  std::vector<std::shared_ptr<void>> pins;
  std::string answer;
  if (line.find('\n') == std::string::npos) {
    answer = ErrorLine(absl::InvalidArgumentError(
        absl::StrCat("a request is one line of at most ", kMaxLine,
                     " bytes ending in \\n")));
  } else {
    line.resize(line.find('\n'));
    answer = Answer(line, &fds, &pins);
  }
  Log(LogLevel::kInfo, "fd socket",
      {F("pid", peer.pid), F("uid", peer.uid),
       F("request", line.substr(0, line.find(' ', line.find(' ') + 1))),
       F("answer", answer.substr(0, answer.size() - 1)), F("fds", fds.size())});
  SendAnswer(conn, answer, fds);
  for (int fd : fds) close(fd);
  // Give a prompt peer a moment to read, so that most answers need no
  // parking.
  for (int i = 0; !pins.empty() && i < 20 && !Delivered(conn); ++i) {
    pollfd p = {conn, POLLRDHUP, 0};
    poll(&p, 1, 5);
  }
  return pins;
}

std::string FdServer::Answer(const std::string& line, std::vector<int>* fds,
                             std::vector<std::shared_ptr<void>>* pins) {
  const std::vector<std::string> words =
      absl::StrSplit(line, ' ', absl::SkipEmpty());
  if (words.size() < 2 || words.size() > 3 ||
      (words[0] != "device" && words[0] != "backing")) {
    return ErrorLine(absl::InvalidArgumentError(
        "expected \"device <bdf> [<token>]\" or \"backing <lease> "
        "[<token>]\""));
  }
  absl::StatusOr<Tenant> tenant =
      auth_->IdentifyToken(words.size() == 3 ? words[2] : "");
  if (!tenant.ok()) return ErrorLine(tenant.status());
  if (words[0] == "device") {
    if (!tenant->Has(kRolePrivileged)) {
      return ErrorLine(absl::PermissionDeniedError(
          "device fds need the privileged role: the device can DMA to any "
          "IOVA of the container, not only the tenant's leases"));
    }
    absl::StatusOr<int> fd = source_->DeviceFd(words[1]);
    if (!fd.ok()) return ErrorLine(fd.status());
    fds->push_back(*fd);
    return "ok 1\n";
  }
  if (!tenant->Has(kRoleTenant)) {
    return ErrorLine(absl::PermissionDeniedError(absl::StrCat(
        "tenant \"", tenant->name, "\" does not have the tenant role")));
  }
  if (manager_->views_enabled()) {
    // The lease's own view: one descriptor, the runs back to back.
    absl::StatusOr<PoolManager::ViewHandout> view =
        manager_->HandOutView(*tenant, words[1]);
    if (!view.ok()) return ErrorLine(view.status());
    fds->push_back(view->fd);
    if (pins != nullptr) pins->push_back(view->pin);
    std::string runs;
    for (uint64_t off : view->offsets) absl::StrAppend(&runs, " 0:", off);
    return absl::StrCat("ok 1", runs, "\n");
  }
  // isolation: off: the backing of every segment the runs lie in.
  absl::StatusOr<LeaseInfo> lease = manager_->Get(*tenant, words[1]);
  if (!lease.ok()) return ErrorLine(lease.status());
  if (lease->quarantine) {
    return ErrorLine(absl::NotFoundError(
        absl::StrCat("lease ", words[1], " has ended")));
  }
  // On an error no descriptor is sent: close those gathered so far.
  auto fail = [fds](const absl::Status& s) {
    for (int fd : *fds) close(fd);
    fds->clear();
    return ErrorLine(s);
  };
  std::map<uint32_t, int> index_of_segment;
  std::string runs;
  for (const LeaseRun& run : lease->runs) {
    auto it = index_of_segment.find(run.segment_id);
    if (it == index_of_segment.end()) {
      if (fds->size() == kMaxFds) {
        return fail(absl::ResourceExhaustedError(
            absl::StrCat("the lease spans more than ", kMaxFds, " segments")));
      }
      absl::StatusOr<int> fd = source_->BackingFd(run.iova);
      if (!fd.ok()) return fail(fd.status());
      it = index_of_segment.emplace(run.segment_id, fds->size()).first;
      fds->push_back(*fd);
    }
    absl::StrAppend(&runs, " ", it->second, ":", run.backing_offset);
  }
  return absl::StrCat("ok ", fds->size(), runs, "\n");
}

}  // namespace physpool::server
