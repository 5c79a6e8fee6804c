// SPDX-License-Identifier: Apache-2.0
#include "server/memory/holders.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "util/errno_status.h"

namespace physpool::server {
namespace {

// The initial pid namespace's inode (PROC_PID_INIT_INO): fixed by the
// kernel.
constexpr uint64_t kInitPidNamespace = 0xEFFFFFFCu;
constexpr uint64_t kKernelThread = 0x00200000;  // PF_KTHREAD

// Calls f(name) for every entry of `dir` but "." and "..".
template <typename F>
void ForEachEntry(const std::string& dir, F f) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    f(e->d_name);
  }
  closedir(d);
}

// The files of `wanted` that /proc/<pid>/maps maps.
void ScanMaps(const std::string& proc, const std::set<FileId>& wanted,
              std::set<FileId>* found) {
  FILE* f = std::fopen((proc + "/maps").c_str(), "re");
  if (f == nullptr) return;
  char line[1024];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    // start-end perms offset major:minor inode [path]
    unsigned major_no = 0, minor_no = 0;
    unsigned long long ino = 0;
    if (std::sscanf(line, "%*s %*s %*s %x:%x %llu", &major_no, &minor_no,
                    &ino) != 3 ||
        ino == 0) {
      continue;
    }
    const FileId id{makedev(major_no, minor_no), ino};
    if (wanted.count(id)) found->insert(id);
  }
  std::fclose(f);
}

// The fields of /proc/<pid>/stat after "(comm)": [0] is field 3 (state).
std::vector<std::string> StatFields(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  if (!std::getline(f, stat)) return {};
  // comm may hold spaces and parentheses: count from the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 > stat.size()) return {};
  return absl::StrSplit(stat.substr(close + 2), ' ', absl::SkipEmpty());
}

Holder Describe(pid_t pid, const std::string& proc) {
  Holder h;
  h.pid = pid;
  struct stat st;
  if (stat(proc.c_str(), &st) == 0) h.uid = st.st_uid;
  std::ifstream comm(proc + "/comm");
  std::getline(comm, h.command);
  return h;
}

}  // namespace

absl::StatusOr<FileId> FileIdOf(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoStatus("fstat", errno);
  return FileId{st.st_dev, st.st_ino};
}

ScanReport FindHolders(const std::set<FileId>& files,
                       const std::set<pid_t>& trusted) {
  ScanReport out;
  const pid_t self = getpid();
  ForEachEntry("/proc", [&](const char* name) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(name, &pid) || pid == self || trusted.count(pid))
      return;
    const std::string proc = absl::StrCat("/proc/", pid);
    ++out.processes;
    DIR* fds = opendir((proc + "/fd").c_str());
    if (fds == nullptr) {
      if (errno != EACCES && errno != EPERM) return;  // gone
      const std::vector<std::string> f = StatFields(pid);
      uint64_t flags = 0;
      if (f.size() > 6 && absl::SimpleAtoi(f[6], &flags) &&
          (flags & kKernelThread)) {
        return;  // no descriptors of its own
      }
      Holder h = Describe(pid, proc);
      h.uninspected = true;
      out.uninspected.push_back(std::move(h));
      return;
    }
    std::set<FileId> by_fd, by_map;
    while (const dirent* e = readdir(fds)) {
      if (e->d_name[0] == '.') continue;
      struct stat st;
      // stat follows the magic link to the open file itself.
      if (stat(absl::StrCat(proc, "/fd/", e->d_name).c_str(), &st) != 0)
        continue;
      const FileId id{st.st_dev, st.st_ino};
      if (files.count(id)) by_fd.insert(id);
    }
    closedir(fds);
    if (!files.empty()) ScanMaps(proc, files, &by_map);
    if (by_fd.empty() && by_map.empty()) return;
    const Holder h = Describe(pid, proc);
    std::set<FileId> all = by_fd;
    all.insert(by_map.begin(), by_map.end());
    for (const FileId& id : all) {
      Holder one = h;
      one.has_fd = by_fd.count(id) > 0;
      one.maps = by_map.count(id) > 0;
      out.held[id].push_back(one);
    }
  });
  return out;
}

std::string ScanBlindness() {
  struct stat st;
  if (stat("/proc/self/ns/pid", &st) == 0 && st.st_ino != kInitPidNamespace) {
    return "physpoold is not in the host's pid namespace: processes outside "
           "it cannot be seen (run it with the host's pid namespace: "
           "Kubernetes hostPID, podman --pid=host)";
  }
  // /proc with hidepid=2 (invisible) hides other users' processes entirely.
  std::ifstream mounts("/proc/self/mounts");
  std::string line;
  while (std::getline(mounts, line)) {
    const std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() < 4 || f[1] != "/proc" || f[2] != "proc") continue;
    for (absl::string_view opt : absl::StrSplit(f[3], ',')) {
      if ((opt == "hidepid=2" || opt == "hidepid=invisible") &&
          geteuid() != 0) {
        return "/proc is mounted with hidepid=invisible: other users' "
               "processes cannot be seen (remount it, or run physpoold as "
               "root)";
      }
    }
  }
  return "";
}

std::optional<int64_t> DmaBufReferences(int fd) {
  std::ifstream f(absl::StrCat("/proc/self/fdinfo/", fd));
  std::string line;
  while (std::getline(f, line)) {
    absl::string_view v = line;
    if (!absl::ConsumePrefix(&v, "count:")) continue;
    int64_t n = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &n)) return n;
  }
  return std::nullopt;
}

std::optional<uint64_t> ProcessStart(pid_t pid) {
  const std::vector<std::string> f = StatFields(pid);
  uint64_t start = 0;
  if (f.size() < 20 || !absl::SimpleAtoi(f[19], &start)) return std::nullopt;
  return start;
}

std::string Describe(const Holder& h) {
  if (h.pid == 0) {
    return absl::StrCat(h.references,
                        " reference(s) the kernel counts that no process "
                        "scan names: a process physpoold cannot see, a "
                        "descriptor in a socket's queue, or an importer (an "
                        "RDMA region, a GPU)");
  }
  return absl::StrCat("pid ", h.pid, " (", h.command, ") uid ", h.uid, " ",
                      h.uninspected ? "not inspectable (may hold it)"
                      : h.has_fd    ? (h.maps ? "fd+map" : "fd")
                                    : "map");
}

std::string Describe(const std::vector<Holder>& holders) {
  std::string out;
  for (const Holder& h : holders)
    absl::StrAppend(&out, out.empty() ? "" : "; ", Describe(h));
  return out;
}

}  // namespace physpool::server
