// SPDX-License-Identifier: Apache-2.0
// VfioSource and physpool-keeper's stash at start: taking back what it
// holds (keep_contents) or dropping it, and adopting a physseg's memfd.
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "vfio/vfio_source.h"

namespace physpool::vfio {

void VfioSource::CloseStashed(const std::string& name, int fd) {
  if (absl::StartsWith(name, "container") || absl::StartsWith(name, "group-") ||
      absl::StartsWith(name, "device-")) {
    kernel_->Close(fd);  // the kernel's VFIO descriptors
  } else {
    close(fd);
  }
}

void VfioSource::DropStash(const std::map<std::string, int>& all) {
  for (const auto& [name, fd] : all) {
    ops_.Unstash(name);
    CloseStashed(name, fd);
  }
}

absl::Status VfioSource::TakeStash(bool keep_contents) {
  absl::StatusOr<std::map<std::string, int>> all = config_.stash->List();
  if (!all.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot list what physpool-keeper holds: ", all.status().message()));
  }
  if (!keep_contents) {  // void leases: their memory and mappings go now
    DropStash(*all);
    return absl::OkStatus();
  }
  for (const auto& [name, fd] : *all) {
    uint64_t iova = 0;
    int group = 0;
    if (name == "container") {
      container_ = fd;
    } else if (absl::StartsWith(name, "container-") &&
               absl::SimpleAtoi(name.substr(10), &group)) {
      domains_.TakeStashed(group, fd);
    } else if (absl::StartsWith(name, "group-") &&
               absl::SimpleAtoi(name.substr(6), &group)) {
      group_fds_[group] = fd;
    } else if (absl::StartsWith(name, "device-")) {
      device_fds_[name.substr(7)] = fd;
    } else if (absl::StartsWith(name, "seg-") &&
               absl::SimpleHexAtoi(name.substr(4), &iova)) {
      stashed_segments_[iova] = fd;
    } else if (absl::StartsWith(name, "view-")) {
      absl::MutexLock l(&mu_);
      views_[name.substr(5)] = fd;
    } else {
      CloseStashed(name, fd);
    }
  }
  bool pool_wide = false;
  for (const VfioDevice& d : config_.devices) pool_wide |= d.tenant.empty();
  if (container_ < 0 && pool_wide) {
    return absl::FailedPreconditionError(
        "physpool-keeper holds no VFIO container, but the lease store has "
        "live leases of this keeper's memory: the keeper's state is "
        "incomplete. Stop physpool-keeper (its memory and the leases go) and "
        "start it again; docs/vfio.md, \"Restart with isolation on\"");
  }
  reattached_ = true;
  return absl::OkStatus();
}

absl::StatusOr<VfioSource::Mapped> VfioSource::AdoptSegment(
    const PlannedSegment& p) {
  auto it = stashed_segments_.find(p.iova);
  if (it == stashed_segments_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "physpool-keeper holds no memfd for the physseg at iova ", Hex(p.iova),
        " that live leases use; docs/vfio.md, \"Restart with isolation on\""));
  }
  const int fd = it->second;
  stashed_segments_.erase(it);
  absl::StatusOr<Backing> b =
      kernel_->AdoptBacking(fd, BackingName(p.iova), p.bytes);
  if (!b.ok()) return Annotate(b.status(), "backing of iova " + Hex(p.iova));
  return Mapped{*b, p.freelist, p.numa};  // mapped in the container already
}

}  // namespace physpool::vfio
