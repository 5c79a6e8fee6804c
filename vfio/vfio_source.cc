// SPDX-License-Identifier: Apache-2.0
#include "vfio/vfio_source.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "util/file.h"

namespace physpool::vfio {

VfioSource::VfioSource(VfioConfig config, Kernel* kernel,
                       std::function<void(const std::string&)> notice)
    : config_(std::move(config)),
      kernel_(kernel),
      notice_(std::move(notice)),
      ops_(kernel_, config_.stash, notice_),
      domains_(config_.devices, kernel_, &ops_, notice_) {}

VfioSource::~VfioSource() { Teardown(); }

void VfioSource::Teardown() {
  // With a stash, the stash keeps the container, its mappings and the
  // memory: only this daemon's descriptors and mappings go.
  const bool keep = config_.stash != nullptr;
  for (const auto& [bdf, fd] : device_fds_) kernel_->Close(fd);
  device_fds_.clear();
  {
    absl::MutexLock l(&mu_);
    for (const auto& [iova, m] : mapped_) {
      if (!keep && container_ >= 0)
        (void)kernel_->UnmapDma(container_, iova, m.backing.bytes);
      kernel_->ReleaseBacking(m.backing, /*remove=*/false);
    }
    mapped_.clear();
    for (const auto& [name, fd] : views_) close(fd);
    views_.clear();
  }
  for (const auto& [iova, fd] : stashed_segments_) close(fd);
  stashed_segments_.clear();
  domains_.Teardown(keep);
  for (const auto& [group, fd] : group_fds_) kernel_->Close(fd);
  group_fds_.clear();
  if (container_ >= 0) kernel_->Close(container_);
  container_ = -1;
  segments_.clear();
  started_ = false;
}

std::string VfioSource::Layout() const {
  const LayoutConfig& l = config_.layout;
  std::string out = absl::StrCat(
      "vfio;page=", l.page_size, ";backing=",
      config_.backing == BackingKind::kFile ? "file:" + config_.dir : "memfd",
      ";base=", l.iova_base, ";max_segment=", l.max_segment_bytes, ";devices=");
  for (const VfioDevice& d : config_.devices) {
    absl::StrAppend(&out, d.bdf, "@", d.dma_limit,
                    d.tenant.empty() ? "" : ":" + d.tenant, ",");
  }
  absl::StrAppend(&out, ";pool=");
  for (const PoolShare& p : l.pool) {
    absl::StrAppend(&out, p.numa, ":", p.bytes, ":",
                    p.low_bytes ? absl::StrCat(*p.low_bytes) : "-", ",");
  }
  return out;
}

absl::Status VfioSource::Start(bool keep_contents) {
  if (started_) return absl::FailedPreconditionError("started twice");
  if (config_.devices.empty()) {
    return absl::InvalidArgumentError("the vfio source needs a device");
  }
  absl::StatusOr<Memlock> memlock = CheckLimits();
  if (!memlock.ok()) return memlock.status();
  if (config_.stash != nullptr) {
    if (config_.backing != BackingKind::kMemfd) {
      return absl::InvalidArgumentError(
          "vfio.keeper needs vfio.backing: memfd (files survive a restart by "
          "themselves)");
    }
    if (absl::Status s = TakeStash(keep_contents); !s.ok()) return s;
  }

  Undo undo;
  if (config_.stash != nullptr && !reattached_) {
    // A fresh start that fails leaves nothing in the stash either.
    undo.Push([this] {
      absl::StatusOr<std::map<std::string, int>> all = config_.stash->List();
      if (all.ok()) DropStash(*all);
    });
  }
  if (absl::Status s = OpenPoolContainer(&undo); !s.ok()) return s;
  std::map<std::string, int> group_of;
  if (absl::Status s = OpenGroups(&undo, &group_of); !s.ok()) return s;
  std::vector<IovaRange> ranges;
  std::optional<IommuInfo> pool_info;
  if (absl::Status s = IommuRanges(&ranges, &pool_info); !s.ok()) return s;
  absl::StatusOr<int64_t> maps =
      MapSegments(ranges, pool_info, keep_contents, &undo);
  if (!maps.ok()) return maps.status();
  if (absl::Status s = OpenDevices(group_of, &undo); !s.ok()) return s;

  // Commit.
  ranges_ = ranges;
  if (pool_info) {
    dma_avail_ = pool_info->dma_avail < 0 || reattached_
                     ? pool_info->dma_avail
                     : pool_info->dma_avail - *maps;
  }
  memlock_ = *memlock;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [iova, m] : mapped_)
      segments_.push_back(Describe(iova, m));
  }
  undo.Commit();
  started_ = true;
  return absl::OkStatus();
}

absl::StatusOr<Memlock> VfioSource::CheckLimits() {
  uint64_t total = 0;
  for (const PoolShare& p : config_.layout.pool) total += p.bytes;
  absl::StatusOr<Memlock> memlock = kernel_->GetMemlock();
  if (!memlock.ok()) return memlock.status();
  if (!memlock->cap_ipc_lock && memlock->limit < total) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "pinning the pool needs RLIMIT_MEMLOCK >= ", total, " bytes (now ",
        memlock->limit,
        ") or CAP_IPC_LOCK: raise it (ulimit -l, systemd LimitMEMLOCK=, "
        "the container's memlock ulimit) or grant CAP_IPC_LOCK"));
  }
  if (config_.backing == BackingKind::kFile) {
    if (absl::Status s = MakePrivateDir(config_.dir, 0700); !s.ok()) return s;
  }
  udmabuf_ = kernel_->GetUdmabufInfo();
  if (config_.backing != BackingKind::kMemfd) {
    view_support_ = absl::FailedPreconditionError(
        "per-lease views (udmabuf) need vfio.backing: memfd; hugetlbfs files "
        "cannot be sealed");
  } else if (!udmabuf_.usable.ok()) {
    view_support_ = absl::FailedPreconditionError(absl::StrCat(
        "per-lease views need /dev/udmabuf (CONFIG_UDMABUF, modprobe "
        "udmabuf): ",
        udmabuf_.usable.message()));
  } else {
    view_support_ = absl::OkStatus();
  }
  return memlock;
}

absl::Status VfioSource::OpenPoolContainer(Undo* undo) {
  bool pool_wide = false;  // some device reaches the whole pool
  for (const VfioDevice& d : config_.devices) pool_wide |= d.tenant.empty();
  if (reattached_ || !pool_wide) return absl::OkStatus();
  absl::StatusOr<int> container = kernel_->OpenContainer();
  if (!container.ok()) return container.status();
  container_ = *container;
  undo->Push([this] {
    kernel_->Close(container_);
    container_ = -1;
  });
  return ops_.Stash("container", container_);
}

absl::Status VfioSource::OpenGroups(Undo* undo,
                                    std::map<std::string, int>* group_of) {
  std::map<int, std::string> group_tenant;
  bool pool_iommu_set = false;
  for (const VfioDevice& d : config_.devices) {
    absl::StatusOr<int> group = kernel_->GroupOf(d.bdf);
    if (!group.ok()) {
      return Annotate(group.status(),
                      "device " + d.bdf + " (is it bound to vfio-pci?)");
    }
    (*group_of)[d.bdf] = *group;
    if (auto t = group_tenant.find(*group); t != group_tenant.end()) {
      if (t->second != d.tenant) {  // devices sharing a group share a domain
        return absl::FailedPreconditionError(absl::StrCat(
            "device ", d.bdf, " (tenant \"", d.tenant,
            "\") shares IOMMU group ", *group, " with a device of tenant \"",
            t->second,
            "\" (\"\" = pool-wide): the IOMMU cannot tell devices of one "
            "group apart; give them the same tenant"));
      }
      if (!d.tenant.empty() && !reattached_) {  // reattached: below
        domains_.AddDevice(*group, d.bdf);
      }
      continue;
    }
    group_tenant[*group] = d.tenant;
    if (group_fds_.count(*group)) continue;  // from the stash, attached
    if (reattached_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "physpool-keeper holds no fd of IOMMU group ", *group, " (device ",
          d.bdf,
          "): the devices changed since the keeper's container was "
          "made; stop physpool-keeper (the leases go) and start again"));
    }
    if (absl::Status s = AttachGroup(d, *group, &pool_iommu_set, undo);
        !s.ok()) {
      return s;
    }
  }
  // The tenant domains the keeper holds.
  if (reattached_) return domains_.Adopt(config_.devices, *group_of);
  return absl::OkStatus();
}

absl::Status VfioSource::AttachGroup(const VfioDevice& d, int group,
                                     bool* pool_iommu_set, Undo* undo) {
  absl::StatusOr<int> fd = OpenGroupWaiting(group);
  if (!fd.ok()) return Annotate(fd.status(), "device " + d.bdf);
  group_fds_[group] = *fd;
  undo->Push([this, group] {
    kernel_->Close(group_fds_[group]);
    group_fds_.erase(group);
  });
  if (absl::Status s = ops_.Stash(absl::StrCat("group-", group), *fd);
      !s.ok()) {
    return s;
  }
  if (!d.tenant.empty()) return domains_.Open(d, group, *fd, undo);
  if (absl::Status s = kernel_->SetContainer(*fd, container_); !s.ok()) {
    return Annotate(s, "device " + d.bdf);
  }
  if (!*pool_iommu_set) {  // the IOMMU is set once a group is in
    if (absl::Status s = kernel_->SetIommuType1v2(container_); !s.ok()) {
      return s;
    }
    *pool_iommu_set = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<int> VfioSource::OpenGroupWaiting(int group) {
  const absl::Time deadline = absl::Now() + config_.group_busy_timeout;
  absl::Time next_notice = absl::InfinitePast();
  for (;;) {
    absl::StatusOr<int> fd = kernel_->OpenGroup(group);
    if (fd.ok() || ErrnoOf(fd.status()) != EBUSY) return fd;
    const std::vector<std::string> holders = kernel_->VfioHolders();
    const std::string who =
        holders.empty() ? "another process" : absl::StrJoin(holders, ", ");
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::UnavailableError(absl::StrCat(
          fd.status().message(), ": IOMMU group ", group, " is held by ", who,
          "; gave up after ", absl::FormatDuration(config_.group_busy_timeout),
          " (vfio.group_busy_timeout_ms). A process that holds a device fd "
          "keeps the group open: stop it or make it close the fd"));
    }
    if (now >= next_notice && notice_) {
      notice_(absl::StrCat(
          "IOMMU group ", group, " (/dev/vfio/", group, ") is busy, held by ",
          who,
          ": a tenant that kept a device fd of the previous daemon keeps the "
          "group, its container and its DMA mappings alive until it closes "
          "the fd; retrying for up to ",
          absl::FormatDuration(deadline - now)));
      next_notice = now + absl::Seconds(5);
    }
    absl::SleepFor(std::min(absl::Milliseconds(100), deadline - now));
  }
}

absl::Status VfioSource::IommuRanges(std::vector<IovaRange>* ranges,
                                     std::optional<IommuInfo>* pool_info) {
  // Every domain's IOMMU must translate the pool's IOVAs: the layout uses
  // what all of them translate, so each device sees a lease at one IOVA.
  std::vector<int> containers;
  if (container_ >= 0) containers.push_back(container_);
  for (int c : domains_.Containers()) containers.push_back(c);
  for (size_t i = 0; i < containers.size(); ++i) {
    absl::StatusOr<IommuInfo> info = kernel_->GetIommuInfo(containers[i]);
    if (!info.ok()) return info.status();
    if (info->ranges.empty()) {
      return absl::FailedPreconditionError(
          "VFIO_IOMMU_GET_INFO reported no IOVA ranges (the capability chain "
          "needs Linux 5.4 or later)");
    }
    const uint64_t min_iommu_page = info->page_sizes & -info->page_sizes;
    if (min_iommu_page == 0 || page_size() % min_iommu_page != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "page size ", page_size(), " is not a multiple of the IOMMU's ",
          "smallest page (page sizes ", Hex(info->page_sizes), ")"));
    }
    *ranges = i == 0 ? info->ranges : IntersectRanges(*ranges, info->ranges);
    if (containers[i] == container_) {
      *pool_info = *info;
    } else {
      domains_.SetDmaAvail(containers[i], info->dma_avail);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> VfioSource::MapSegments(
    const std::vector<IovaRange>& ranges,
    const std::optional<IommuInfo>& pool_info, bool keep_contents, Undo* undo) {
  absl::StatusOr<std::vector<PlannedSegment>> plan =
      PlanLayout(config_.layout, ranges);
  if (!plan.ok()) return plan.status();
  if (pool_info && !reattached_ && pool_info->dma_avail >= 0 &&
      static_cast<int64_t>(plan->size()) > pool_info->dma_avail) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the layout needs ", plan->size(), " DMA mappings, the container has ",
        pool_info->dma_avail,
        " left (vfio_iommu_type1 dma_entry_limit); raise max_segment_bytes"));
  }
  for (const PlannedSegment& p : *plan) {
    absl::StatusOr<Mapped> m = MapSegment(p, keep_contents);
    if (!m.ok()) return m.status();
    {
      absl::MutexLock l(&mu_);
      mapped_[p.iova] = *m;
    }
    undo->Push([this, iova = p.iova, keep_contents] {
      absl::MutexLock l(&mu_);
      const Mapped& m = mapped_[iova];
      // Taken from the stash: the mapping stays, for the leases in it.
      if (!reattached_ && container_ >= 0)
        (void)ops_.UnmapIova("container", container_, iova, m.backing.bytes);
      kernel_->ReleaseBacking(m.backing, m.backing.created && !keep_contents);
      mapped_.erase(iova);
    });
  }
  return static_cast<int64_t>(plan->size());
}

absl::Status VfioSource::OpenDevices(const std::map<std::string, int>& group_of,
                                     Undo* undo) {
  for (const VfioDevice& d : config_.devices) {
    if (auto kept = device_fds_.find(d.bdf); kept != device_fds_.end()) {
      // From the stash: open all along, bus mastering on.
      if (absl::Status s = kernel_->EnableBusMaster(kept->second); !s.ok())
        return Annotate(s, "device " + d.bdf);
      continue;
    }
    absl::StatusOr<int> fd =
        kernel_->OpenDevice(group_fds_[group_of.at(d.bdf)], d.bdf);
    if (!fd.ok()) return fd.status();
    device_fds_[d.bdf] = *fd;
    undo->Push([this, bdf = d.bdf] {
      kernel_->Close(device_fds_[bdf]);
      device_fds_.erase(bdf);
    });
    if (absl::Status s = ops_.Stash("device-" + d.bdf, *fd); !s.ok()) return s;
    if (absl::Status s = kernel_->EnableBusMaster(*fd); !s.ok()) {
      return Annotate(s, "device " + d.bdf);
    }
  }
  return absl::OkStatus();
}

}  // namespace physpool::vfio
