// Who still reaches a file: the processes that hold a descriptor of it or
// map it, found in /proc/<pid>/fd and /proc/<pid>/maps. The quarantine of
// ended leases (pool_manager.h) asks this about the leases' views.
//
// Only processes this one may inspect are seen (as root: all of them, in
// its pid namespace). A descriptor in flight in a unix socket's queue is
// in no process: the fd socket pins what it sends until the peer has read
// it (fd_server.h).
#ifndef PHYSPOOL_SERVER_HOLDERS_H_
#define PHYSPOOL_SERVER_HOLDERS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"

namespace physpool::server {

// A file by device and inode (what stat(2) says).
struct FileId {
  uint64_t dev = 0;
  uint64_t ino = 0;
  bool operator<(const FileId& o) const {
    return std::tie(dev, ino) < std::tie(o.dev, o.ino);
  }
  bool operator==(const FileId& o) const {
    return dev == o.dev && ino == o.ino;
  }
};

absl::StatusOr<FileId> FileIdOf(int fd);

struct Holder {
  pid_t pid = 0;
  uid_t uid = 0;
  std::string command;  // /proc/<pid>/comm
  bool has_fd = false;  // holds a descriptor
  bool maps = false;    // maps it
};

// For each of `files` that some process other than this one holds: the
// holders, by pid. Processes that vanish while being read are skipped.
// `scanned` (optional) receives how many processes were read.
// `unreadable` (optional) receives the processes whose descriptors this
// one may not read (another uid without CAP_SYS_PTRACE): they may hold
// anything. The processes in `trusted` (physpool-keeper) are skipped, as
// this one is.
std::map<FileId, std::vector<Holder>> FindHolders(
    const std::set<FileId>& files, int* scanned = nullptr,
    std::set<pid_t>* unreadable = nullptr, const std::set<pid_t>& trusted = {});

// When process `pid` started (/proc/<pid>/stat, field 22, in clock ticks
// since boot; readable for every process), or nullopt if there is none: a
// pid with another start time is another process.
std::optional<uint64_t> ProcessStart(pid_t pid);

// "pid 57 (e2e_tenant) uid 1000 fd+map" for logs and the CLI.
std::string Describe(const Holder& h);
// Each of `holders` so, joined by "; ".
std::string Describe(const std::vector<Holder>& holders);

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_HOLDERS_H_
