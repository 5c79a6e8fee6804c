// SPDX-License-Identifier: Apache-2.0
#include "server/daemon/keeper_server.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/daemon/keeper_client.h"
#include "util/errno_status.h"
#include "vfio/kernel.h"

namespace physpool::server {

class KeeperServer::Impl {
 public:
  Impl(std::string instance, std::function<void(const std::string&)> say)
      : instance_(std::move(instance)), say_(std::move(say)) {}
  ~Impl() {
    for (const auto& [name, m] : mem_) munmap(m.base, m.bytes);
    for (const auto& [name, fd] : kept_) close(fd);
  }
  size_t size() const { return kept_.size(); }

  // A new connection: only a peer of the keeper's own uid (or root) is
  // served; it is greeted with the instance. false: closed.
  bool Accept(int conn) {
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != geteuid() && cred.uid != 0)) {
      say_(absl::StrCat("refused a peer of uid ", cred.uid, " (pid ", cred.pid,
                        ")"));
      close(conn);
      return false;
    }
    timeval tv{5, 0};
    setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (!SendKeeperMessage(conn, "HELLO " + instance_, -1).ok()) {
      close(conn);
      return false;
    }
    return true;
  }

  // Serves one message of `conn`; false when the connection is done.
  bool Serve(int conn) {
    int fd = -1;
    absl::StatusOr<std::string> m = RecvKeeperMessage(conn, &fd);
    if (!m.ok()) return false;
    std::string reply = "OK";
    if (absl::StartsWith(*m, "PUT ")) {
      const std::string name = m->substr(4);
      if (fd < 0 || !ValidKeeperName(name)) {
        reply = "ERR PUT needs a valid name and one descriptor";
      } else {
        Forget(name);  // a replaced container's mappings are not ours
        kept_[name] = fd;
        fd = -1;
      }
    } else if (absl::StartsWith(*m, "DROP ")) {
      Forget(m->substr(5));
    } else if (absl::StartsWith(*m, "MAP ")) {
      reply = Map(m->substr(4));
    } else if (absl::StartsWith(*m, "UNMAP ")) {
      reply = Unmap(m->substr(6));
    } else if (absl::StartsWith(*m, "MAPS ")) {
      auto it = maps_.find(m->substr(5));
      std::string line = "M";
      size_t n = 0;
      if (it != maps_.end()) {
        for (const auto& [iova, bytes] : it->second) {
          absl::StrAppend(&line, " ", iova, ":", bytes);
          if (++n % 512 == 0) {
            if (!SendKeeperMessage(conn, line, -1).ok()) return false;
            line = "M";
          }
        }
      }
      if (line != "M" && !SendKeeperMessage(conn, line, -1).ok()) return false;
      reply = "END";
    } else if (*m == "LIST") {
      for (const auto& [name, kept] : kept_) {
        if (!SendKeeperMessage(conn, "FD " + name, kept).ok()) return false;
      }
      reply = "END";
    } else {
      reply = "ERR unknown request";
    }
    if (fd >= 0) close(fd);
    return SendKeeperMessage(conn, reply, -1).ok();
  }

 private:
  struct Memory {
    uint8_t* base = nullptr;
    uint64_t bytes = 0;
  };

  void Forget(const std::string& name) {
    if (auto it = mem_.find(name); it != mem_.end()) {
      munmap(it->second.base, it->second.bytes);
      mem_.erase(it);
    }
    maps_.erase(name);
    if (auto it = kept_.find(name); it != kept_.end()) {
      close(it->second);
      kept_.erase(it);
    }
  }

  // The keeper's own mapping of the memfd kept under `name` (made once).
  absl::StatusOr<Memory> MemoryOf(const std::string& name) {
    if (auto it = mem_.find(name); it != mem_.end()) return it->second;
    auto kept = kept_.find(name);
    if (kept == kept_.end()) return NotHeld(name);
    struct stat st;
    if (fstat(kept->second, &st) != 0)
      return ErrnoStatus("fstat " + name, errno);
    void* p = mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   kept->second, 0);
    if (p == MAP_FAILED) return ErrnoStatus("mmap " + name, errno);
    Memory m{static_cast<uint8_t*>(p), static_cast<uint64_t>(st.st_size)};
    mem_[name] = m;
    return m;
  }

  // ENOENT: the daemon's side sees NOT_FOUND.
  static absl::Status NotHeld(const std::string& name) {
    return ErrnoStatus("the keeper holds no " + name, ENOENT);
  }

  static std::string Failed(const absl::Status& s) {
    return absl::StrCat("ERRNO ", ErrnoOf(s), " ", s.message());
  }

  // "<container> <memfd> <offset> <iova> <bytes>"
  std::string Map(const std::string& args) {
    std::vector<std::string> a = absl::StrSplit(args, ' ');
    uint64_t offset = 0, iova = 0, bytes = 0;
    if (a.size() != 5 || !absl::SimpleAtoi(a[2], &offset) ||
        !absl::SimpleAtoi(a[3], &iova) || !absl::SimpleAtoi(a[4], &bytes)) {
      return "ERR MAP needs <container> <memfd> <offset> <iova> <bytes>";
    }
    auto container = kept_.find(a[0]);
    if (container == kept_.end()) return Failed(NotHeld(a[0]));
    absl::StatusOr<Memory> mem = MemoryOf(a[1]);
    if (!mem.ok()) return Failed(mem.status());
    if (offset > mem->bytes || bytes > mem->bytes - offset) {
      return absl::StrCat("ERR [", offset, ", +", bytes, ") is outside ", a[1]);
    }
    absl::Status s = vfio::LinuxKernel()->MapDma(
        container->second, mem->base + offset, iova, bytes);
    if (!s.ok()) return Failed(s);
    maps_[a[0]][iova] = bytes;
    return "OK";
  }

  // "<container> <iova> <bytes>" -> "OK <bytes unmapped>"
  std::string Unmap(const std::string& args) {
    std::vector<std::string> a = absl::StrSplit(args, ' ');
    uint64_t iova = 0, bytes = 0;
    if (a.size() != 3 || !absl::SimpleAtoi(a[1], &iova) ||
        !absl::SimpleAtoi(a[2], &bytes)) {
      return "ERR UNMAP needs <container> <iova> <bytes>";
    }
    auto container = kept_.find(a[0]);
    if (container == kept_.end()) return Failed(NotHeld(a[0]));
    absl::StatusOr<uint64_t> n =
        vfio::LinuxKernel()->UnmapDma(container->second, iova, bytes);
    if (!n.ok()) return Failed(n.status());
    std::map<uint64_t, uint64_t>& maps = maps_[a[0]];
    maps.erase(maps.lower_bound(iova), maps.lower_bound(iova + bytes));
    return absl::StrCat("OK ", *n);
  }

  const std::string instance_;
  const std::function<void(const std::string&)> say_;
  std::map<std::string, int> kept_;
  std::map<std::string, Memory> mem_;  // memfds the keeper mapped, by name
  // What the keeper mapped into each kept container: iova -> bytes.
  std::map<std::string, std::map<uint64_t, uint64_t>> maps_;
};

KeeperServer::KeeperServer(std::string instance,
                           std::function<void(const std::string&)> say)
    : impl_(std::make_unique<Impl>(std::move(instance), std::move(say))) {}
KeeperServer::~KeeperServer() = default;
size_t KeeperServer::size() const { return impl_->size(); }
bool KeeperServer::Accept(int conn) { return impl_->Accept(conn); }
bool KeeperServer::Serve(int conn) { return impl_->Serve(conn); }

}  // namespace physpool::server
