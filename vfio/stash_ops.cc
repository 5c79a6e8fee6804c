// SPDX-License-Identifier: Apache-2.0
#include "vfio/stash_ops.h"

#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace physpool::vfio {

StashOps::StashOps(Kernel* kernel, FdStash* stash,
                   std::function<void(const std::string&)> notice)
    : kernel_(kernel), stash_(stash), notice_(std::move(notice)) {}

std::string StashOps::SegmentKey(uint64_t iova) {
  return absl::StrCat("seg-", absl::Hex(iova));
}

std::string StashOps::DomainKey(int group) {
  return absl::StrCat("container-", group);
}

absl::Status StashOps::Stash(const std::string& name, int fd) {
  if (stash_ == nullptr) return absl::OkStatus();
  absl::Status s = stash_->Put(name, fd);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("physpool-keeper did not take ", name, ": ", s.message(),
                     " (without it, this memory would not survive a restart)"));
  }
  return s;
}

void StashOps::Unstash(const std::string& name) {
  if (stash_ == nullptr) return;
  if (absl::Status s = stash_->Drop(name); !s.ok() && notice_) {
    notice_(absl::StrCat("physpool-keeper did not drop ", name, ": ",
                         s.message(),
                         " (it keeps that memory until it "
                         "restarts)"));
  }
}

absl::Status StashOps::MapIova(const std::string& key, int container,
                               const DmaPiece& p) {
  if (stash_ == nullptr) {
    return kernel_->MapDma(container, p.vaddr, p.iova, p.bytes);
  }
  return stash_->MapDma(key, SegmentKey(p.seg_iova), p.iova - p.seg_iova,
                        p.iova, p.bytes);
}

absl::Status StashOps::UnmapIova(const std::string& key, int container,
                                 uint64_t iova, uint64_t bytes) {
  absl::StatusOr<uint64_t> n = stash_ == nullptr
                                   ? kernel_->UnmapDma(container, iova, bytes)
                                   : stash_->UnmapDma(key, iova, bytes);
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

}  // namespace physpool::vfio
