// SPDX-License-Identifier: Apache-2.0
// VfioSource's per-lease views: udmabufs over the memfd backing, stashed
// with physpool-keeper when there is one.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "vfio/vfio_source.h"

namespace physpool::vfio {

absl::StatusOr<int> VfioSource::CreateView(const std::string& name,
                                           const std::vector<ViewRange>& runs) {
  if (!view_support_.ok()) return view_support_;
  std::vector<Kernel::UdmabufRange> ranges;
  uint64_t total = 0;
  {
    absl::MutexLock l(&mu_);
    for (const ViewRange& r : runs) {
      auto it = mapped_.upper_bound(r.iova);
      if (r.bytes == 0 || it == mapped_.begin() ||
          r.iova + r.bytes >
              std::prev(it)->first + std::prev(it)->second.backing.bytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "[", Hex(r.iova), ", +", r.bytes, ") is not inside one segment"));
      }
      --it;
      ranges.push_back({it->second.backing.fd, r.iova - it->first, r.bytes});
      total += r.bytes;
    }
  }
  if (udmabuf_.list_limit != 0 && ranges.size() > udmabuf_.list_limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "lease ", name, " has ", ranges.size(),
        " runs, more than udmabuf's list_limit ", udmabuf_.list_limit,
        " (raise /sys/module/udmabuf/parameters/list_limit, or lower "
        "leases.max_runs_per_lease)"));
  }
  if (udmabuf_.size_limit_mb != 0 && total > udmabuf_.size_limit_mb << 20) {
    return absl::ResourceExhaustedError(
        absl::StrCat("lease ", name, " is ", total,
                     " bytes, more than udmabuf's "
                     "size_limit_mb ",
                     udmabuf_.size_limit_mb,
                     " (raise /sys/module/udmabuf/parameters/size_limit_mb)"));
  }
  absl::StatusOr<int> fd = kernel_->CreateUdmabuf(ranges);
  if (!fd.ok()) return fd;
  // Fail closed: a view the next daemon cannot find would escape its
  // quarantine after a restart.
  if (absl::Status s = ops_.Stash("view-" + name, *fd); !s.ok()) {
    close(*fd);
    return s;
  }
  return fd;
}

absl::StatusOr<int> VfioSource::OpenView(const std::string& name) {
  absl::MutexLock l(&mu_);
  auto it = views_.find(name);
  if (it == views_.end()) return absl::NotFoundError("no view " + name);
  const int fd = fcntl(it->second, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("dup a view", errno);
  return fd;
}

int64_t VfioSource::ViewOwnReferences(const std::string& name) const {
  absl::MutexLock l(&mu_);
  // The keeper's copy (every view is stashed when there is a keeper), and
  // the descriptor of a view taken back from it at start.
  return (config_.stash != nullptr ? 1 : 0) + (views_.count(name) ? 1 : 0);
}

void VfioSource::DestroyView(const std::string& name) {
  ops_.Unstash("view-" + name);
  absl::MutexLock l(&mu_);
  if (auto it = views_.find(name); it != views_.end()) {
    close(it->second);
    views_.erase(it);
  }
}

std::vector<std::string> VfioSource::ViewNames() {
  absl::MutexLock l(&mu_);
  std::vector<std::string> out;
  for (const auto& [name, fd] : views_) out.push_back(name);
  return out;
}

}  // namespace physpool::vfio
