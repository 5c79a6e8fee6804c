// SPDX-License-Identifier: Apache-2.0
#include "server/daemon/sockets.h"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "util/errno_status.h"
#include "util/file.h"

namespace physpool::server {

absl::Status PrepareSocket(const std::string& path) {
  // The runtime dir: ours, not a planted one (docs/operations.md,
  // "Directories").
  if (auto s = MakePrivateParentDir(path, 0755); !s.ok()) return s;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return absl::OkStatus();
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const bool live =
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  if (live) {
    return absl::AlreadyExistsError(
        absl::StrCat("another physpoold is listening on ", path));
  }
  unlink(path.c_str());
  return absl::OkStatus();
}

absl::StatusOr<gid_t> SocketGroup(const ServerConfig& cfg) {
  if (cfg.unix_group.empty()) return getegid();
  gid_t gid = 0;
  if (absl::SimpleAtoi(cfg.unix_group, &gid)) return gid;
  std::vector<char> buf(16384);
  group g{};
  group* found = nullptr;
  if (getgrnam_r(cfg.unix_group.c_str(), &g, buf.data(), buf.size(), &found) !=
          0 ||
      found == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("no group \"", cfg.unix_group, "\""));
  }
  return found->gr_gid;
}

absl::Status OpenSocket(const std::string& path, uint32_t mode, gid_t gid) {
  if (gid != getegid() && chown(path.c_str(), static_cast<uid_t>(-1), gid)) {
    return ErrnoStatus(absl::StrCat("chgrp ", gid, " ", path), errno);
  }
  if (chmod(path.c_str(), mode) != 0) {
    return ErrnoStatus(absl::StrCat("chmod ", path), errno);
  }
  return absl::OkStatus();
}

void StopExposer(std::unique_ptr<prometheus::Exposer> exposer,
                 const std::string& listen, int port) {
  if (!exposer) return;
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    exposer.reset();
    stopped = true;
  });
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "*") host = "127.0.0.1";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ipv4 = inet_pton(AF_INET, host.c_str(), &addr.sin_addr) == 1;
  while (ipv4 && !stopped) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    (void)connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stopper.join();
}

}  // namespace physpool::server
