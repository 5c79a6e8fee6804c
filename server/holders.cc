#include "server/holders.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "util/errno_status.h"

namespace physpool::server {
namespace {

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

}  // namespace

absl::StatusOr<FileId> FileIdOf(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoStatus("fstat", errno);
  return FileId{st.st_dev, st.st_ino};
}

std::map<FileId, std::vector<Holder>> FindHolders(
    const std::set<FileId>& files, int* scanned, std::set<pid_t>* unreadable,
    const std::set<pid_t>& trusted) {
  std::map<FileId, std::vector<Holder>> out;
  if (scanned != nullptr) *scanned = 0;
  if (files.empty()) return out;
  const pid_t self = getpid();
  ForEachEntry("/proc", [&](const char* name) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(name, &pid) || pid == self || trusted.count(pid))
      return;
    const std::string proc = absl::StrCat("/proc/", pid);
    if (scanned != nullptr) ++*scanned;
    std::set<FileId> by_fd, by_map;
    if (unreadable != nullptr &&
        access((proc + "/fd").c_str(), R_OK | X_OK) != 0 && errno == EACCES) {
      unreadable->insert(pid);
    }
    ForEachEntry(proc + "/fd", [&](const char* fd) {
      struct stat st;
      // stat follows the magic link to the open file itself.
      if (stat(absl::StrCat(proc, "/fd/", fd).c_str(), &st) != 0) return;
      const FileId id{st.st_dev, st.st_ino};
      if (files.count(id)) by_fd.insert(id);
    });
    ScanMaps(proc, files, &by_map);
    if (by_fd.empty() && by_map.empty()) return;
    Holder h;
    h.pid = pid;
    struct stat st;
    if (stat(proc.c_str(), &st) == 0) h.uid = st.st_uid;
    std::ifstream comm(proc + "/comm");
    std::getline(comm, h.command);
    std::set<FileId> all = by_fd;
    all.insert(by_map.begin(), by_map.end());
    for (const FileId& id : all) {
      Holder one = h;
      one.has_fd = by_fd.count(id) > 0;
      one.maps = by_map.count(id) > 0;
      out[id].push_back(one);
    }
  });
  return out;
}

std::optional<uint64_t> ProcessStart(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  if (!std::getline(f, stat)) return std::nullopt;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
  // the fields are counted from the last ')'; starttime is field 22.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(close + 2), ' ', absl::SkipEmpty());
  uint64_t start = 0;
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start))
    return std::nullopt;
  return start;
}

std::string Describe(const Holder& h) {
  return absl::StrCat("pid ", h.pid, " (", h.command, ") uid ", h.uid, " ",
                      h.has_fd ? (h.maps ? "fd+map" : "fd") : "map");
}

std::string Describe(const std::vector<Holder>& holders) {
  std::string out;
  for (const Holder& h : holders)
    absl::StrAppend(&out, out.empty() ? "" : "; ", Describe(h));
  return out;
}

}  // namespace physpool::server
