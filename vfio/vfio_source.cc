#include "vfio/vfio_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "util/file.h"

namespace physpool::vfio {

// Undo steps run in reverse unless committed: the scope guard of a
// multi-step setup.
class VfioSource::Undo {
 public:
  Undo() = default;
  Undo(const Undo&) = delete;
  Undo& operator=(const Undo&) = delete;
  ~Undo() {
    if (committed_) return;
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) (*it)();
  }
  void Push(std::function<void()> f) { steps_.push_back(std::move(f)); }
  void Commit() { committed_ = true; }

 private:
  std::vector<std::function<void()>> steps_;
  bool committed_ = false;
};

namespace {

absl::Status Annotate(const absl::Status& s, absl::string_view what) {
  absl::Status out(s.code(), absl::StrCat(what, ": ", s.message()));
  s.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

}  // namespace

VfioSource::VfioSource(VfioConfig config, Kernel* kernel,
                       std::function<void(const std::string&)> notice)
    : config_(std::move(config)),
      kernel_(kernel),
      notice_(std::move(notice)),
      device_tenants_([this] {
        std::set<std::string> out;
        for (const VfioDevice& d : config_.devices)
          if (!d.tenant.empty()) out.insert(d.tenant);
        return out;
      }()) {}

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
  {
    absl::MutexLock l(&dmu_);
    for (auto& [group, d] : domains_) {
      if (!keep) {
        for (const auto& [iova, bytes] : d.maps)
          (void)kernel_->UnmapDma(d.container, iova, bytes);
      }
      kernel_->Close(d.container);
    }
    domains_.clear();
  }
  for (const auto& [group, fd] : stashed_domains_) kernel_->Close(fd);
  stashed_domains_.clear();
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

std::string VfioSource::BackingName(uint64_t iova) const {
  const std::string name = absl::StrCat("seg-", absl::Hex(iova), ".mem");
  if (config_.backing == BackingKind::kMemfd) return "physpool-" + name;
  return config_.dir + "/" + name;
}

BackedSegment VfioSource::Describe(uint64_t iova, const Mapped& m) const {
  BackedSegment seg;
  seg.spec.iova = iova;
  seg.spec.pages = pglist::PageCount(m.backing.bytes / page_size());
  seg.spec.freelist = m.freelist;
  seg.spec.numa = m.numa;
  seg.path = m.backing.path;
  return seg;
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

namespace {
std::string SegmentKey(uint64_t iova) {
  return absl::StrCat("seg-", absl::Hex(iova));
}
}  // namespace

absl::Status VfioSource::Stash(const std::string& name, int fd) {
  if (config_.stash == nullptr) return absl::OkStatus();
  absl::Status s = config_.stash->Put(name, fd);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("physpool-keeper did not take ", name, ": ", s.message(),
                     " (without it, this memory would not survive a restart)"));
  }
  return s;
}

void VfioSource::Unstash(const std::string& name) {
  if (config_.stash == nullptr) return;
  if (absl::Status s = config_.stash->Drop(name); !s.ok() && notice_) {
    notice_(absl::StrCat("physpool-keeper did not drop ", name, ": ",
                         s.message(),
                         " (it keeps that memory until it "
                         "restarts)"));
  }
}

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
    Unstash(name);
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
      stashed_domains_[group] = fd;
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

absl::StatusOr<VfioSource::Mapped> VfioSource::MapSegment(
    const PlannedSegment& p, bool reattach) {
  if (reattach && reattached_) return AdoptSegment(p);
  const absl::Time t0 = absl::Now();
  absl::StatusOr<Backing> b =
      kernel_->CreateBacking(config_.backing, BackingName(p.iova), p.bytes,
                             page_size(), p.numa, reattach);
  if (!b.ok()) return Annotate(b.status(), "backing of iova " + Hex(p.iova));
  // Stashed before it is mapped: the stash maps it from its own copy.
  if (absl::Status s = Stash(SegmentKey(p.iova), b->fd); !s.ok()) {
    kernel_->ReleaseBacking(*b, /*remove=*/b->created);
    return s;
  }
  const absl::Time t1 = absl::Now();
  timings_.backing += t1 - t0;
  if (container_ < 0) return Mapped{*b, p.freelist, p.numa};  // no pool domain
  absl::Status s =
      MapIova("container", container_, {p.iova, p.bytes, p.iova, b->base});
  timings_.map_dma += absl::Now() - t1;
  ++timings_.map_calls;
  if (!s.ok()) {
    Unstash(SegmentKey(p.iova));
    kernel_->ReleaseBacking(*b, /*remove=*/b->created);
    return s;
  }
  return Mapped{*b, p.freelist, p.numa};
}

std::string VfioSource::DomainKey(int group) {
  return absl::StrCat("container-", group);
}

absl::Status VfioSource::MapIova(const std::string& key, int container,
                                 const Piece& p) {
  if (config_.stash == nullptr) {
    return kernel_->MapDma(container, p.vaddr, p.iova, p.bytes);
  }
  return config_.stash->MapDma(key, SegmentKey(p.seg_iova), p.iova - p.seg_iova,
                               p.iova, p.bytes);
}

absl::Status VfioSource::UnmapIova(const std::string& key, int container,
                                   uint64_t iova, uint64_t bytes) {
  absl::StatusOr<uint64_t> n = config_.stash == nullptr
                                   ? kernel_->UnmapDma(container, iova, bytes)
                                   : config_.stash->UnmapDma(key, iova, bytes);
  if (!n.ok()) return n.status();
  if (*n != bytes) {
    return absl::InternalError(absl::StrCat(
        "VFIO_IOMMU_UNMAP_DMA iova=", Hex(iova), " size=", Hex(bytes), " in ",
        key, " unmapped ", Hex(*n),
        " bytes: type1 lets only the process that made a mapping unmap it "
        "(a mapping of an earlier daemon, made without physpool-keeper?)"));
  }
  return absl::OkStatus();
}

absl::Status VfioSource::Start(bool keep_contents) {
  if (started_) return absl::FailedPreconditionError("started twice");
  if (config_.devices.empty()) {
    return absl::InvalidArgumentError("the vfio source needs a device");
  }
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
  bool pool_wide = false;  // some device reaches the whole pool
  for (const VfioDevice& d : config_.devices) pool_wide |= d.tenant.empty();
  if (!reattached_ && pool_wide) {
    absl::StatusOr<int> container = kernel_->OpenContainer();
    if (!container.ok()) return container.status();
    container_ = *container;
    undo.Push([this] {
      kernel_->Close(container_);
      container_ = -1;
    });
    if (absl::Status s = Stash("container", container_); !s.ok()) return s;
  }
  std::map<std::string, int> group_of;
  std::map<int, std::string> group_tenant;
  bool pool_iommu_set = false;
  for (const VfioDevice& d : config_.devices) {
    absl::StatusOr<int> group = kernel_->GroupOf(d.bdf);
    if (!group.ok()) {
      return Annotate(group.status(),
                      "device " + d.bdf + " (is it bound to vfio-pci?)");
    }
    group_of[d.bdf] = *group;
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
        absl::MutexLock l(&dmu_);
        domains_[*group].bdfs.push_back(d.bdf);
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
    absl::StatusOr<int> fd = OpenGroupWaiting(*group);
    if (!fd.ok()) return Annotate(fd.status(), "device " + d.bdf);
    group_fds_[*group] = *fd;
    undo.Push([this, g = *group] {
      kernel_->Close(group_fds_[g]);
      group_fds_.erase(g);
    });
    if (absl::Status s = Stash(absl::StrCat("group-", *group), *fd); !s.ok())
      return s;
    if (!d.tenant.empty()) {
      if (absl::Status s = OpenDomain(d, *group, &undo); !s.ok()) return s;
      continue;
    }
    if (absl::Status s = kernel_->SetContainer(*fd, container_); !s.ok()) {
      return Annotate(s, "device " + d.bdf);
    }
    if (!pool_iommu_set) {  // the IOMMU is set once a group is in
      if (absl::Status s = kernel_->SetIommuType1v2(container_); !s.ok()) {
        return s;
      }
      pool_iommu_set = true;
    }
  }
  if (reattached_) {  // the tenant domains the keeper holds
    for (const VfioDevice& d : config_.devices) {
      if (d.tenant.empty()) continue;
      absl::MutexLock l(&dmu_);
      if (domains_.count(group_of[d.bdf])) {
        domains_[group_of[d.bdf]].bdfs.push_back(d.bdf);
        continue;
      }
      auto kept = stashed_domains_.find(group_of[d.bdf]);
      if (kept == stashed_domains_.end()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "physpool-keeper holds no container for IOMMU group ",
            group_of[d.bdf], " (device ", d.bdf, " of tenant \"", d.tenant,
            "\"): the devices changed since the keeper's domains were "
            "made; stop physpool-keeper (the leases go) and start again"));
      }
      Domain& dom = domains_[group_of[d.bdf]];
      dom.tenant = d.tenant;
      dom.group = group_of[d.bdf];
      dom.container = kept->second;
      dom.bdfs = {d.bdf};
      stashed_domains_.erase(kept);
    }
  }

  // Every domain's IOMMU must translate the pool's IOVAs: the layout uses
  // what all of them translate, so each device sees a lease at one IOVA.
  std::vector<int> containers;
  if (container_ >= 0) containers.push_back(container_);
  {
    absl::MutexLock l(&dmu_);
    for (const auto& [g, dom] : domains_) containers.push_back(dom.container);
  }
  std::optional<IommuInfo> pool_info;
  std::vector<IovaRange> ranges;
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
    ranges = i == 0 ? info->ranges : IntersectRanges(ranges, info->ranges);
    if (containers[i] == container_) {
      pool_info = *info;
    } else {
      absl::MutexLock l(&dmu_);
      for (auto& [g, dom] : domains_)
        if (dom.container == containers[i]) dom.dma_avail = info->dma_avail;
    }
  }
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
    undo.Push([this, iova = p.iova, keep_contents] {
      absl::MutexLock l(&mu_);
      const Mapped& m = mapped_[iova];
      // Taken from the stash: the mapping stays, for the leases in it.
      if (!reattached_ && container_ >= 0)
        (void)UnmapIova("container", container_, iova, m.backing.bytes);
      kernel_->ReleaseBacking(m.backing, m.backing.created && !keep_contents);
      mapped_.erase(iova);
    });
  }
  for (const VfioDevice& d : config_.devices) {
    if (auto kept = device_fds_.find(d.bdf); kept != device_fds_.end()) {
      // From the stash: open all along, bus mastering on.
      if (absl::Status s = kernel_->EnableBusMaster(kept->second); !s.ok())
        return Annotate(s, "device " + d.bdf);
      continue;
    }
    absl::StatusOr<int> fd =
        kernel_->OpenDevice(group_fds_[group_of[d.bdf]], d.bdf);
    if (!fd.ok()) return fd.status();
    device_fds_[d.bdf] = *fd;
    undo.Push([this, bdf = d.bdf] {
      kernel_->Close(device_fds_[bdf]);
      device_fds_.erase(bdf);
    });
    if (absl::Status s = Stash("device-" + d.bdf, *fd); !s.ok()) return s;
    if (absl::Status s = kernel_->EnableBusMaster(*fd); !s.ok()) {
      return Annotate(s, "device " + d.bdf);
    }
  }
  ranges_ = ranges;
  if (pool_info) {
    dma_avail_ =
        pool_info->dma_avail < 0 || reattached_
            ? pool_info->dma_avail
            : pool_info->dma_avail - static_cast<int64_t>(plan->size());
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

absl::Status VfioSource::OpenDomain(const VfioDevice& d, int group,
                                    Undo* undo) {
  absl::StatusOr<int> container = kernel_->OpenContainer();
  if (!container.ok()) return container.status();
  {
    absl::MutexLock l(&dmu_);
    Domain& dom = domains_[group];
    dom.tenant = d.tenant;
    dom.group = group;
    dom.container = *container;
    dom.bdfs = {d.bdf};
  }
  undo->Push([this, group] {
    absl::MutexLock l(&dmu_);
    kernel_->Close(domains_[group].container);
    domains_.erase(group);
  });
  if (absl::Status s = Stash(DomainKey(group), *container); !s.ok()) return s;
  if (absl::Status s = kernel_->SetContainer(group_fds_[group], *container);
      !s.ok()) {
    return Annotate(s, "device " + d.bdf);
  }
  return kernel_->SetIommuType1v2(*container);
}

absl::StatusOr<BackedSegment> VfioSource::AddSegment(uint64_t bytes,
                                                     uint32_t freelist,
                                                     int32_t numa) {
  if (!started_) return absl::FailedPreconditionError("not started");
  if (bytes == 0 || bytes % page_size() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "segment size ", bytes, " is not a positive multiple of the page size ",
        page_size()));
  }
  absl::StatusOr<Area> area = AreaOf(config_.layout, freelist);
  if (!area.ok()) return area.status();
  std::map<uint64_t, uint64_t> used;
  uint64_t pinned = 0;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [iova, m] : mapped_) {
      used[iova] = m.backing.bytes;
      pinned += m.backing.bytes;
    }
  }
  absl::StatusOr<Memlock> memlock = kernel_->GetMemlock();
  if (!memlock.ok()) return memlock.status();
  if (!memlock->cap_ipc_lock && memlock->limit - pinned < bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "pinning ", bytes, " more bytes needs RLIMIT_MEMLOCK >= ",
        pinned + bytes, " (now ", memlock->limit, ") or CAP_IPC_LOCK"));
  }
  std::optional<uint64_t> at =
      PlaceSegment(ranges_, used, area->lo, area->hi, bytes, page_size());
  if (!at) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "no room for ", bytes, " bytes in the IOVA area [", Hex(area->lo), ", ",
        Hex(area->hi), ") of freelist ", freelist));
  }
  absl::StatusOr<Mapped> m = MapSegment({*at, bytes, freelist, numa}, false);
  if (!m.ok()) return m.status();
  {
    absl::MutexLock l(&mu_);
    mapped_[*at] = *m;
  }
  segments_.push_back(Describe(*at, *m));
  return segments_.back();
}

absl::StatusOr<BackedSegment> VfioSource::RestoreSegment(
    const BackedSegment& seg, bool keep_contents) {
  if (!started_) return absl::FailedPreconditionError("not started");
  const uint64_t bytes = seg.spec.pages.value * page_size();
  {
    // Before touching any backing: a fresh one would truncate a live file.
    absl::MutexLock l(&mu_);
    auto next = mapped_.lower_bound(seg.spec.iova);
    if ((next != mapped_.end() && next->first < seg.spec.iova + bytes) ||
        (next != mapped_.begin() &&
         std::prev(next)->first + std::prev(next)->second.backing.bytes >
             seg.spec.iova)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot restore the segment at iova ", Hex(seg.spec.iova),
          ": it overlaps a segment of the layout"));
    }
  }
  // The backing's name follows from the IOVA.
  absl::StatusOr<Mapped> m =
      MapSegment({seg.spec.iova, seg.spec.pages.value * page_size(),
                  seg.spec.freelist, seg.spec.numa},
                 keep_contents);
  if (!m.ok()) return m.status();
  {
    absl::MutexLock l(&mu_);
    mapped_[seg.spec.iova] = *m;
  }
  segments_.push_back(Describe(seg.spec.iova, *m));
  return segments_.back();
}

absl::Status VfioSource::RemoveSegment(uint64_t iova) {
  Mapped m;
  {
    absl::MutexLock l(&mu_);
    auto it = mapped_.find(iova);
    if (it == mapped_.end()) {
      return absl::NotFoundError("no vfio segment at iova " + Hex(iova));
    }
    m = it->second;
  }
  if (container_ >= 0) {
    if (absl::Status s =
            UnmapIova("container", container_, iova, m.backing.bytes);
        !s.ok()) {
      return s;  // still mapped: the segment stays
    }
  }
  {
    absl::MutexLock l(&mu_);
    mapped_.erase(iova);
  }
  kernel_->ReleaseBacking(m.backing, /*remove=*/true);
  Unstash(SegmentKey(iova));
  for (auto it = segments_.begin(); it != segments_.end(); ++it) {
    if (it->spec.iova == iova) {
      segments_.erase(it);
      break;
    }
  }
  return absl::OkStatus();
}

absl::Status VfioSource::Zero(uint64_t iova, uint64_t bytes) {
  uint8_t* p = nullptr;
  {
    absl::MutexLock l(&mu_);
    auto it = mapped_.upper_bound(iova);
    if (it == mapped_.begin()) {
      return absl::InvalidArgumentError("iova " + Hex(iova) +
                                        " is in no segment");
    }
    --it;
    if (iova - it->first + bytes > it->second.backing.bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "[", Hex(iova), ", +", bytes, ") is not inside one segment"));
    }
    p = it->second.backing.base + (iova - it->first);
  }
  std::memset(p, 0, bytes);
  return absl::OkStatus();
}

absl::StatusOr<int> VfioSource::BackingFd(uint64_t iova) {
  absl::MutexLock l(&mu_);
  auto it = mapped_.upper_bound(iova);
  if (it == mapped_.begin() ||
      iova - std::prev(it)->first >= std::prev(it)->second.backing.bytes) {
    return absl::NotFoundError("no vfio segment holds iova " + Hex(iova));
  }
  const int fd = fcntl(std::prev(it)->second.backing.fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("dup backing fd", errno);
  return fd;
}

absl::StatusOr<int> VfioSource::DeviceFd(const std::string& bdf) {
  auto it = device_fds_.find(bdf);
  if (it == device_fds_.end()) {
    return absl::NotFoundError("physpoold drives no device " + bdf);
  }
  return kernel_->Dup(it->second);
}

}  // namespace physpool::vfio

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
  if (absl::Status s = Stash("view-" + name, *fd); !s.ok()) {
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
  Unstash("view-" + name);
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

namespace physpool::vfio {

bool VfioSource::HasDevices(const std::string& tenant) const {
  return !tenant.empty() && device_tenants_.count(tenant) > 0;
}

absl::StatusOr<std::vector<VfioSource::Piece>> VfioSource::PiecesOf(
    const std::vector<ViewRange>& runs) const {
  std::vector<Piece> out;
  absl::MutexLock l(&mu_);
  for (const ViewRange& r : runs) {
    uint64_t iova = r.iova;
    const uint64_t end = r.iova + r.bytes;
    while (iova < end) {
      auto it = mapped_.upper_bound(iova);
      if (it == mapped_.begin() ||
          iova - std::prev(it)->first >= std::prev(it)->second.backing.bytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "[", Hex(r.iova), ", +", r.bytes, ") is not inside the segments"));
      }
      --it;
      const uint64_t seg_end = it->first + it->second.backing.bytes;
      const uint64_t bytes = std::min(end, seg_end) - iova;
      out.push_back({iova, bytes, it->first,
                     it->second.backing.base + (iova - it->first)});
      iova += bytes;
    }
  }
  return out;
}

absl::Status VfioSource::MapLease(const std::string& tenant,
                                  const std::vector<ViewRange>& runs) {
  if (!HasDevices(tenant)) return absl::OkStatus();
  absl::StatusOr<std::vector<Piece>> pieces = PiecesOf(runs);
  if (!pieces.ok()) return pieces.status();
  uint64_t bytes = 0;
  for (const Piece& p : *pieces) bytes += p.bytes;
  absl::MutexLock l(&dmu_);
  // Up front: a lease the domains cannot take maps nothing.
  int domains = 0;
  for (const auto& [g, d] : domains_) {
    if (d.tenant != tenant) continue;
    ++domains;
    if (d.dma_avail >= 0 &&
        static_cast<int64_t>(pieces->size()) > d.dma_avail) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the lease needs ", pieces->size(),
          " DMA mappings in the IOMMU domain of group ", g, " (device ",
          d.bdfs.front(), " of tenant \"", tenant, "\"), which has ",
          d.dma_avail,
          " left (vfio_iommu_type1 dma_entry_limit): release leases, ask for "
          "fewer runs (contiguous), or raise dma_entry_limit"));
    }
  }
  if (!memlock_.cap_ipc_lock) {  // else the kernel does not count
    uint64_t pinned = 0;
    for (const auto& [g, d] : domains_) pinned += d.mapped_bytes;
    if (container_ >= 0) {
      absl::MutexLock m(&mu_);
      for (const auto& [iova, seg] : mapped_) pinned += seg.backing.bytes;
    }
    if (memlock_.limit < pinned || memlock_.limit - pinned < bytes * domains) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "mapping the lease for tenant \"", tenant, "\"'s devices pins ",
          bytes * domains, " more bytes; RLIMIT_MEMLOCK is ", memlock_.limit,
          " and ", pinned,
          " are pinned (each domain pins its own): raise it or grant "
          "CAP_IPC_LOCK"));
    }
  }
  std::vector<std::pair<Domain*, const Piece*>> done;
  for (auto& [g, d] : domains_) {
    if (d.tenant != tenant) continue;
    for (const Piece& p : *pieces) {
      absl::Status s = MapIova(DomainKey(g), d.container, p);
      if (!s.ok()) {
        for (auto it = done.rbegin(); it != done.rend(); ++it) {
          auto [dom, q] = *it;
          if (UnmapIova(DomainKey(dom->group), dom->container, q->iova,
                        q->bytes)
                  .ok()) {
            dom->maps.erase(q->iova);
            dom->mapped_bytes -= q->bytes;
            if (dom->dma_avail >= 0) ++dom->dma_avail;
          }
        }
        return Annotate(
            s, absl::StrCat("mapping the lease for device ", d.bdfs.front(),
                            " of tenant \"", tenant, "\""));
      }
      d.maps[p.iova] = p.bytes;
      d.mapped_bytes += p.bytes;
      if (d.dma_avail >= 0) --d.dma_avail;
      done.push_back({&d, &p});
    }
  }
  return absl::OkStatus();
}

absl::Status VfioSource::UnmapLease(const std::string& tenant,
                                    const std::vector<ViewRange>& runs) {
  if (!HasDevices(tenant)) return absl::OkStatus();
  absl::StatusOr<std::vector<Piece>> pieces = PiecesOf(runs);
  if (!pieces.ok()) return pieces.status();
  absl::Status first;
  absl::MutexLock l(&dmu_);
  for (auto& [g, d] : domains_) {
    if (d.tenant != tenant) continue;
    for (const Piece& p : *pieces) {
      auto it = d.maps.find(p.iova);
      if (it == d.maps.end()) continue;  // not mapped (a failed grant)
      absl::Status s = UnmapIova(DomainKey(g), d.container, p.iova, it->second);
      if (!s.ok()) {
        if (first.ok()) first = s;
        continue;  // still mapped: stays recorded, to be retried
      }
      d.mapped_bytes -= it->second;
      d.maps.erase(it);
      if (d.dma_avail >= 0) ++d.dma_avail;
    }
  }
  return first;
}

absl::StatusOr<MemorySource::Reconciled> VfioSource::Reconcile(
    const std::vector<LiveLease>& live) {
  Reconciled out;
  std::map<std::string, std::vector<Piece>> want;  // by tenant
  for (const LiveLease& l : live) {
    if (!HasDevices(l.tenant)) continue;
    absl::StatusOr<std::vector<Piece>> pieces = PiecesOf(l.runs);
    if (!pieces.ok()) return pieces.status();
    std::vector<Piece>& w = want[l.tenant];
    w.insert(w.end(), pieces->begin(), pieces->end());
  }
  absl::MutexLock lock(&dmu_);
  for (auto& [g, d] : domains_) {
    // What is mapped now: the stash knows what it mapped (a previous
    // daemon's work); without one the container is new and empty.
    std::map<uint64_t, uint64_t> have = d.maps;
    if (config_.stash != nullptr) {
      absl::StatusOr<std::map<uint64_t, uint64_t>> kept =
          config_.stash->Mappings(DomainKey(g));
      if (!kept.ok()) {
        return absl::UnavailableError(
            absl::StrCat("cannot list the keeper's mappings of group ", g, ": ",
                         kept.status().message()));
      }
      have = *kept;
    }
    std::map<uint64_t, const Piece*> wanted;
    for (const Piece& p : want[d.tenant]) wanted[p.iova] = &p;
    d.maps.clear();
    d.mapped_bytes = 0;
    for (const auto& [iova, bytes] : have) {
      auto w = wanted.find(iova);
      if (w != wanted.end() && w->second->bytes == bytes) {
        d.maps[iova] = bytes;
        d.mapped_bytes += bytes;
        ++out.kept;
        continue;
      }
      if (absl::Status s = UnmapIova(DomainKey(g), d.container, iova, bytes);
          !s.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot unmap a mapping that no live lease of tenant \"", d.tenant,
            "\" needs from the domain of group ", g, ": ", s.message()));
      }
      ++out.unmapped;
    }
    for (const auto& [iova, p] : wanted) {
      if (d.maps.count(iova)) continue;
      if (absl::Status s = MapIova(DomainKey(g), d.container, *p); !s.ok()) {
        ++out.map_errors;
        if (notice_) {
          notice_(absl::StrCat("cannot map [", Hex(iova), ", +", p->bytes,
                               ") of a live lease into the domain of group ", g,
                               ": ", s.message()));
        }
        continue;
      }
      d.maps[iova] = p->bytes;
      d.mapped_bytes += p->bytes;
      ++out.mapped;
    }
    if (absl::StatusOr<IommuInfo> info = kernel_->GetIommuInfo(d.container);
        info.ok()) {
      d.dma_avail = info->dma_avail;
    }
  }
  return out;
}

std::vector<DeviceDomain> VfioSource::DeviceDomains() const {
  std::vector<DeviceDomain> out;
  uint64_t pool_maps = 0, pool_bytes = 0;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [iova, m] : mapped_) {
      ++pool_maps;
      pool_bytes += m.backing.bytes;
    }
  }
  absl::MutexLock l(&dmu_);
  for (const VfioDevice& dev : config_.devices) {
    DeviceDomain dd;
    dd.device = dev;
    if (dev.tenant.empty()) {
      dd.domain = "pool";
      if (container_ >= 0) {
        dd.mappings = pool_maps;
        dd.mapped_bytes = pool_bytes;
      }
      dd.dma_avail = dma_avail_;
    } else {
      for (const auto& [g, d] : domains_) {
        if (std::find(d.bdfs.begin(), d.bdfs.end(), dev.bdf) == d.bdfs.end())
          continue;
        dd.domain = absl::StrCat("group-", g);
        dd.mappings = d.maps.size();
        dd.mapped_bytes = d.mapped_bytes;
        dd.dma_avail = d.dma_avail;
      }
    }
    out.push_back(dd);
  }
  return out;
}

}  // namespace physpool::vfio
