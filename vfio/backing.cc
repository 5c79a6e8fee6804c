// SPDX-License-Identifier: Apache-2.0
#include "vfio/backing.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace physpool::vfio {
namespace {

constexpr long kHugetlbfsMagic = 0x958458f6;
constexpr int kMpolBind = 2;

int Log2(uint64_t v) { return 63 - __builtin_clzll(v); }

}  // namespace

absl::StatusOr<Backing> CreatePosixBacking(BackingKind kind,
                                           const std::string& path,
                                           uint64_t bytes, uint64_t page_size,
                                           int32_t numa, bool reattach) {
  Backing b;
  b.bytes = bytes;
  b.created = !reattach;
  if (kind == BackingKind::kMemfd) {
    if (reattach) {
      return absl::FailedPreconditionError(
          "memfd backing cannot be re-attached after a restart");
    }
    // Sealable: udmabuf (per-lease views) takes only memfds sealed
    // against shrinking.
    unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    if (page_size > 4096) {
      flags |= MFD_HUGETLB | (unsigned(Log2(page_size)) << MFD_HUGE_SHIFT);
    }
    b.fd = memfd_create(path.c_str(), flags);
    b.path = "memfd:" + path;
    if (b.fd < 0) {
      return ErrnoStatus(
          absl::StrCat("memfd_create ", path, " page size ", page_size), errno);
    }
  } else {
    const size_t slash = path.rfind('/');
    const std::string dir =
        slash == std::string::npos ? "." : path.substr(0, slash);
    struct statfs fs;
    if (statfs(dir.c_str(), &fs) != 0) {
      return ErrnoStatus(absl::StrCat("statfs ", dir), errno);
    }
    const bool huge = fs.f_type == kHugetlbfsMagic;
    if (page_size > 4096 && (!huge || uint64_t(fs.f_bsize) != page_size)) {
      return absl::FailedPreconditionError(absl::StrCat(
          dir, " is not a hugetlbfs mount with ", page_size,
          "-byte pages (mount -t hugetlbfs -o pagesize=", page_size / 1024,
          "K none ", dir, ")"));
    }
    // Never through a symlink; a fresh file is ours alone (O_EXCL), a
    // re-attached one must be a regular file of ours.
    struct stat st;
    if (lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          path,
          S_ISLNK(st.st_mode) ? " is a symlink" : " is not a regular file",
          " (owner uid ", st.st_uid,
          "): refusing to follow or overwrite it; remove it"));
    }
    if (!reattach) unlink(path.c_str());  // a stale file of the last run
    b.fd = open(
        path.c_str(),
        O_RDWR | O_CLOEXEC | O_NOFOLLOW | (reattach ? 0 : O_CREAT | O_EXCL),
        0600);
    b.path = path;
    if (b.fd < 0) return ErrnoStatus(absl::StrCat("open ", path), errno);
    if (reattach) {
      if (fstat(b.fd, &st) != 0 || !S_ISREG(st.st_mode) ||
          st.st_uid != geteuid()) {
        close(b.fd);
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot re-attach ", path, ": not a regular file owned by uid ",
            geteuid(), " (owner uid ", st.st_uid, ")"));
      }
    }
  }
  absl::Cleanup close_fd = [&b, kind, reattach] {
    close(b.fd);
    if (kind == BackingKind::kFile && !reattach) unlink(b.path.c_str());
  };
  if (reattach) {
    struct stat st;
    if (fstat(b.fd, &st) != 0) return ErrnoStatus("fstat " + path, errno);
    if (uint64_t(st.st_size) != bytes) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot re-attach ", path, ": it is ", st.st_size,
                       " bytes, the layout needs ", bytes));
    }
  } else if (ftruncate(b.fd, off_t(bytes)) != 0) {
    return ErrnoStatus(absl::StrCat("ftruncate ", b.path, " to ", bytes),
                       errno);
  }
  if (kind == BackingKind::kMemfd &&
      fcntl(b.fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) !=
          0) {
    return ErrnoStatus(absl::StrCat("F_ADD_SEALS ", b.path), errno);
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, b.fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    absl::Status s =
        ErrnoStatus(absl::StrCat("mmap ", b.path, " (", bytes, " bytes)"), err);
    if (err == ENOMEM && page_size > 4096) {
      std::ifstream f("/sys/kernel/mm/hugepages/hugepages-" +
                      absl::StrCat(page_size / 1024) + "kB/free_hugepages");
      uint64_t free_pages = 0;
      f >> free_pages;
      s = absl::ResourceExhaustedError(
          absl::StrCat(s.message(), ": needs ", bytes / page_size, " free ",
                       page_size / 1024, " kB hugepages, the host has ",
                       free_pages, " (raise /proc/sys/vm/nr_hugepages)"));
    }
    return s;
  }
  b.base = static_cast<uint8_t*>(p);
  absl::Cleanup unmap = [&b] { munmap(b.base, b.bytes); };
  if (numa >= 0 && !reattach) {
    unsigned long mask[2] = {0, 0};
    if (numa >= 128) {
      return absl::InvalidArgumentError(absl::StrCat("numa node ", numa));
    }
    mask[numa / 64] = 1UL << (numa % 64);
    if (syscall(SYS_mbind, p, bytes, kMpolBind, mask, 129, 0) != 0) {
      return ErrnoStatus(absl::StrCat("mbind ", b.path, " to node ", numa),
                         errno);
    }
  }
  std::move(unmap).Cancel();
  std::move(close_fd).Cancel();
  return b;
}

absl::Status PopulatePosixBacking(const Backing& b, uint64_t page_size,
                                  int32_t numa) {
  if (madvise(b.base, b.bytes, MADV_POPULATE_WRITE) == 0) return {};
  int err = errno;
  if (err == EINVAL) {  // before Linux 5.14: fault each page in by hand
    for (uint64_t off = 0; off < b.bytes; off += page_size) {
      *reinterpret_cast<volatile uint8_t*>(b.base + off) = 0;  // reads as 0
    }
    return {};
  }
  std::string free_pages = "?";
  if (page_size > 4096) {
    std::ifstream f(absl::StrCat("/sys/devices/system/node/node", numa,
                                 "/hugepages/hugepages-", page_size / 1024,
                                 "kB/free_hugepages"));
    f >> free_pages;
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "populating ", b.path, " (", b.bytes, " bytes) on NUMA node ", numa, ": ",
      std::strerror(err), " (errno ", err, "): node ", numa, " has ",
      free_pages, " free ", page_size / 1024,
      " kB pages (per node: /sys/devices/system/node/node", numa,
      "/hugepages/)"));
}

absl::StatusOr<Backing> AdoptPosixBacking(int fd, const std::string& name,
                                          uint64_t bytes) {
  absl::Cleanup close_fd = [fd] { close(fd); };
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoStatus("fstat " + name, errno);
  if (uint64_t(st.st_size) != bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot adopt ", name, ": it is ", st.st_size,
                     " bytes, the layout needs ", bytes));
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    return ErrnoStatus(absl::StrCat("mmap ", name, " (", bytes, " bytes)"),
                       errno);
  }
  std::move(close_fd).Cancel();
  Backing b;
  b.fd = fd;
  b.base = static_cast<uint8_t*>(p);
  b.bytes = bytes;
  b.path = "memfd:" + name;
  b.created = false;
  return b;
}

void ReleasePosixBacking(const Backing& b, bool remove) {
  if (b.base) munmap(b.base, b.bytes);
  if (b.fd >= 0) close(b.fd);
  if (remove && b.path.rfind("memfd:", 0) != 0) unlink(b.path.c_str());
}

}  // namespace physpool::vfio
