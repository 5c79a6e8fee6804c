// SPDX-License-Identifier: Apache-2.0
// VfioSource's physsegs: backing and mapping one, hot add / restore /
// remove, and the calls that reach their memory (Zero, BackingFd), plus
// DeviceFd.
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "vfio/vfio_source.h"

namespace physpool::vfio {

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

absl::StatusOr<VfioSource::Mapped> VfioSource::MapSegment(
    const PlannedSegment& p, bool reattach) {
  if (reattach && reattached_) return AdoptSegment(p);
  const absl::Time t0 = absl::Now();
  absl::StatusOr<Backing> b =
      kernel_->CreateBacking(config_.backing, BackingName(p.iova), p.bytes,
                             page_size(), p.numa, reattach);
  if (!b.ok()) return Annotate(b.status(), "backing of iova " + Hex(p.iova));
  // Stashed before it is mapped: the stash maps it from its own copy.
  if (absl::Status s = ops_.Stash(StashOps::SegmentKey(p.iova), b->fd);
      !s.ok()) {
    kernel_->ReleaseBacking(*b, /*remove=*/b->created);
    return s;
  }
  const absl::Time t1 = absl::Now();
  timings_.backing += t1 - t0;
  if (container_ < 0) return Mapped{*b, p.freelist, p.numa};  // no pool domain
  absl::Status s =
      ops_.MapIova("container", container_, {p.iova, p.bytes, p.iova, b->base});
  timings_.map_dma += absl::Now() - t1;
  ++timings_.map_calls;
  if (!s.ok()) {
    ops_.Unstash(StashOps::SegmentKey(p.iova));
    kernel_->ReleaseBacking(*b, /*remove=*/b->created);
    return s;
  }
  return Mapped{*b, p.freelist, p.numa};
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
            ops_.UnmapIova("container", container_, iova, m.backing.bytes);
        !s.ok()) {
      return s;  // still mapped: the segment stays
    }
  }
  {
    absl::MutexLock l(&mu_);
    mapped_.erase(iova);
  }
  kernel_->ReleaseBacking(m.backing, /*remove=*/true);
  ops_.Unstash(StashOps::SegmentKey(iova));
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
