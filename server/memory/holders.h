// SPDX-License-Identifier: Apache-2.0
// Who still reaches a file: what the quarantine of ended leases
// (lease_views.h) asks about the leases' views. Two ways to know:
//
// - The kernel's count of references to a dma-buf (udmabuf views, the vfio
//   source): every descriptor in any process or pid namespace, every
//   mapping, every descriptor in flight in a socket's queue, every in-kernel
//   importer (an RDMA memory region, a GPU import). Read from this process's
//   own /proc/self/fdinfo/<fd> ("count:"): no privilege needed.
// - A scan of /proc/<pid>/fd and /proc/<pid>/maps of every process (other
//   views: sim files). It names the holders it can read; a process it may
//   not read (another uid, no CAP_SYS_PTRACE) is reported as uninspected,
//   and the quarantine counts it as holding every view (fail closed: it
//   may have received one from a holder). A descriptor in flight in a
//   socket's queue is in no process: the fd socket pins what it sends until
//   the peer has read it (fd_server.h). Where the scan cannot see every
//   process at all (another pid namespace, /proc with hidepid), ScanBlindness
//   says why and nothing may be taken as free on its word.
//
// State: none (functions). Thread safety: thread-safe (no shared state).
// I/O: /proc reads and stat(2), on the calling thread. FindHolders reads
// every /proc/<pid>/fd, maps, stat and comm (the quarantine thread, no
// lock held); ScanBlindness reads /proc/self/ns/pid and /proc/self/mounts
// (at start, in a turn); DmaBufReferences reads /proc/self/fdinfo/<fd>
// (in a turn at a view's first hand-out and at start, with no lock in the
// scan); FileIdOf fstat()s; ProcessStart reads /proc/<pid>/stat (the fd
// socket). REQUIRES: a descriptor passed stays open for the call.
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
#include "server/core/types.h"

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

struct ScanReport {
  // For each file some readable process other than this one holds or maps:
  // the holders.
  std::map<FileId, std::vector<Holder>> held;
  // User processes (not kernel threads, not `trusted`) whose descriptors
  // and mappings this one may not read.
  std::vector<Holder> uninspected;
  int processes = 0;  // how many were looked at
};

// Scans /proc for `files`. Processes that vanish while being read are
// skipped; this process and those in `trusted` (physpool-keeper) too.
ScanReport FindHolders(const std::set<FileId>& files,
                       const std::set<pid_t>& trusted = {});

// Why a /proc scan cannot see every process that could hold a view: this
// process is not in the host's pid namespace, or /proc hides other users'
// processes (hidepid) from it. "" when it can.
std::string ScanBlindness();

// The references to `fd`'s file the kernel counts, if it is a dma-buf
// (its fdinfo has a "count:" line; the read's own reference excluded).
std::optional<int64_t> DmaBufReferences(int fd);

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
