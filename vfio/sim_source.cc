// SPDX-License-Identifier: Apache-2.0
#include "vfio/sim_source.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "util/file.h"
#include "util/status_macros.h"
#include "vfio/backing.h"

namespace physpool::vfio {

SimConfig DefaultSimConfig(const std::string& dir) {
  SimConfig c;
  c.dir = dir;
  const uint64_t mib = 1 << 20;
  c.segments = {{512 * mib, 0, 0},
                {256 * mib, 0, 1},
                {128 * mib, 1, 0},
                {128 * mib, 1, 1}};
  return c;
}

SimSource::~SimSource() {
  absl::MutexLock l(&mu_);
  for (auto& [iova, b] : maps_) ReleasePosixBacking(b, /*remove=*/false);
}

std::string SimSource::PathOf(int n) const {
  return absl::StrCat(config_.dir, "/segment-", n, ".mem");
}

std::string SimSource::Layout() const {
  std::string out = absl::StrCat(config_.page_size);
  uint64_t iova = config_.base_iova;
  for (size_t i = 0; i < config_.segments.size(); ++i) {
    absl::StrAppend(&out, ";", iova, ":", config_.segments[i].bytes, ":",
                    PathOf(i));
    iova += config_.segments[i].bytes + config_.page_size;
  }
  return out;
}

absl::Status SimSource::Start(bool keep_contents) {
  if (config_.page_size < 4096 ||
      (config_.page_size & (config_.page_size - 1))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sim page size ", config_.page_size, " is not a power of two >= 4096"));
  }
  if (absl::Status s = MakePrivateDir(config_.dir, 0700); !s.ok()) return s;
  next_iova_ = config_.base_iova;
  for (size_t i = 0; i < config_.segments.size(); ++i) {
    const SimSegmentConfig& s = config_.segments[i];
    if (s.bytes == 0 || s.bytes % config_.page_size != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "segment size ", s.bytes,
          " is not a positive multiple of the page size ", config_.page_size));
    }
    auto seg = Create(next_iova_, s, PathOf(i), keep_contents);
    if (!seg.ok()) return seg.status();
    Append(*seg);
  }
  return absl::OkStatus();
}

void SimSource::Append(const BackedSegment& seg) {
  // Leave a gap of one page between segments: IOVA-adjacent segments are
  // legal, but a gap catches runs that wrongly cross a segment.
  next_iova_ = std::max(
      next_iova_, seg.spec.iova + seg.spec.pages.value * config_.page_size +
                      config_.page_size);
  segments_.push_back(seg);
}

absl::StatusOr<BackedSegment> SimSource::RestoreSegment(
    const BackedSegment& seg, bool keep_contents) {
  const uint64_t bytes = seg.spec.pages.value * config_.page_size;
  {
    absl::MutexLock l(&mu_);
    auto next = maps_.lower_bound(seg.spec.iova);
    const bool overlaps =
        (next != maps_.end() && next->first < seg.spec.iova + bytes) ||
        (next != maps_.begin() &&
         std::prev(next)->first + std::prev(next)->second.bytes >
             seg.spec.iova);
    if (bytes == 0 || overlaps) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot restore the segment at iova ", seg.spec.iova, " (", bytes,
          " bytes): it overlaps the configured segments"));
    }
  }
  auto made = Create(seg.spec.iova, {bytes, seg.spec.freelist, seg.spec.numa},
                     seg.path, keep_contents);
  if (!made.ok()) return made.status();
  Append(*made);
  return made;
}

absl::StatusOr<BackedSegment> SimSource::AddSegment(uint64_t bytes,
                                                    uint32_t freelist,
                                                    int32_t numa) {
  if (bytes == 0 || bytes % config_.page_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "segment size ", bytes, " is not a positive multiple of the page size ",
        config_.page_size));
  }
  // Named by IOVA, apart from the configured segment-<n> files.
  auto seg = Create(
      next_iova_, {bytes, freelist, numa},
      absl::StrCat(config_.dir, "/added-", absl::Hex(next_iova_), ".mem"),
      /*keep_contents=*/false);
  if (!seg.ok()) return seg.status();
  Append(*seg);
  return seg;
}

absl::StatusOr<BackedSegment> SimSource::Create(uint64_t iova,
                                                const SimSegmentConfig& s,
                                                const std::string& path,
                                                bool keep_contents) {
  // Sim pages are synthetic: the files live on any filesystem (tmpfs).
  absl::StatusOr<Backing> b = CreatePosixBacking(
      BackingKind::kFile, path, s.bytes, 4096, /*numa=*/-1, keep_contents);
  if (!b.ok()) return b.status();
  BackedSegment seg;
  seg.spec.iova = iova;
  seg.spec.pages = pglist::PageCount(s.bytes / config_.page_size);
  seg.spec.freelist = s.freelist;
  seg.spec.numa = s.numa;
  seg.path = path;
  absl::MutexLock l(&mu_);
  maps_[iova] = *b;
  return seg;
}

absl::Status SimSource::RemoveSegment(uint64_t iova) {
  for (auto it = segments_.begin(); it != segments_.end(); ++it) {
    if (it->spec.iova != iova) continue;
    {
      absl::MutexLock l(&mu_);
      auto m = maps_.find(iova);
      if (m != maps_.end()) {
        ReleasePosixBacking(m->second, /*remove=*/true);
        maps_.erase(m);
      }
    }
    segments_.erase(it);
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("no sim segment at iova ", iova));
}

absl::Status SimSource::Zero(uint64_t iova, uint64_t bytes) {
  uint8_t* p = nullptr;
  int fd = -1;
  off_t offset = 0;
  {
    absl::MutexLock l(&mu_);
    auto it = maps_.upper_bound(iova);
    if (it == maps_.begin()) {
      return absl::InvalidArgumentError(
          absl::StrCat("iova ", iova, " is in no segment"));
    }
    --it;
    if (iova + bytes > it->first + it->second.bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("[", iova, ", +", bytes, ") is not inside one segment"));
    }
    p = it->second.base + (iova - it->first);
    fd = it->second.fd;
    offset = static_cast<off_t>(iova - it->first);
  }
  // Tenants map views, not the segment files: dropping the pages (tmpfs
  // reads holes as zeros) frees the memory instead of touching it.
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                static_cast<off_t>(bytes)) == 0) {
    return absl::OkStatus();
  }
  std::memset(p, 0, bytes);
  return absl::OkStatus();
}

namespace {
constexpr absl::string_view kViewPrefix = "lease-";
constexpr absl::string_view kViewSuffix = ".view";
}  // namespace

absl::StatusOr<std::string> SimSource::ViewPath(const std::string& name) const {
  const bool ok = !name.empty() && name.size() <= 128 &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) ||
                           c == '-' || c == '_';
                  });
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("view name \"", name, "\" is not [A-Za-z0-9_-]{1,128}"));
  }
  return absl::StrCat(config_.dir, "/", kViewPrefix, name, kViewSuffix);
}

absl::StatusOr<int> SimSource::CreateView(const std::string& name,
                                          const std::vector<ViewRange>& runs) {
  uint64_t total = 0;
  {
    absl::MutexLock l(&mu_);
    for (const ViewRange& r : runs) {
      auto it = maps_.upper_bound(r.iova);
      if (r.bytes == 0 || it == maps_.begin() ||
          r.iova + r.bytes >
              std::prev(it)->first + std::prev(it)->second.bytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "[", Hex(r.iova), ", +", r.bytes, ") is not inside one segment"));
      }
      total += r.bytes;
    }
  }
  ASSIGN_OR_RETURN(const std::string path, ViewPath(name));
  // Never follows a planted link, never reuses a file it did not make.
  const int fd = open(path.c_str(),
                      O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create view ", path), errno);
  if (ftruncate(fd, static_cast<off_t>(total)) != 0) {
    const int err = errno;
    close(fd);
    unlink(path.c_str());
    return ErrnoStatus(absl::StrCat("size view ", path), err);
  }
  return fd;
}

absl::StatusOr<int> SimSource::OpenView(const std::string& name) {
  ASSIGN_OR_RETURN(const std::string path, ViewPath(name));
  const int fd = open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT)
      return absl::NotFoundError(absl::StrCat("no view ", path));
    return ErrnoStatus(absl::StrCat("open view ", path), err);
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat(
        "view ", path, " is not a regular file of uid ", geteuid()));
  }
  return fd;
}

void SimSource::DestroyView(const std::string& name) {
  auto path = ViewPath(name);
  if (path.ok()) unlink(path->c_str());
}

std::vector<std::string> SimSource::ViewNames() {
  std::vector<std::string> out;
  DIR* d = opendir(config_.dir.c_str());
  if (d == nullptr) return out;
  while (const dirent* e = readdir(d)) {
    absl::string_view n = e->d_name;
    if (absl::ConsumePrefix(&n, kViewPrefix) &&
        absl::ConsumeSuffix(&n, kViewSuffix)) {
      out.emplace_back(n);
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<int> SimSource::BackingFd(uint64_t iova) {
  absl::MutexLock l(&mu_);
  auto it = maps_.upper_bound(iova);
  if (it == maps_.begin() ||
      iova - std::prev(it)->first >= std::prev(it)->second.bytes) {
    return absl::NotFoundError(
        absl::StrCat("no sim segment holds iova ", iova));
  }
  const int fd = fcntl(std::prev(it)->second.fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("dup backing fd", errno);
  return fd;
}

}  // namespace physpool::vfio
