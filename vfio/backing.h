// SPDX-License-Identifier: Apache-2.0
// The backing memory of physsegs, made with plain POSIX calls: memfd
// (MFD_HUGETLB for 2 MiB / 1 GiB pages) or a file on a hugetlbfs mount.
// Shared by LinuxKernel and FakeKernel; see Kernel::CreateBacking.
#ifndef PHYSPOOL_VFIO_BACKING_H_
#define PHYSPOOL_VFIO_BACKING_H_

#include "vfio/kernel.h"

namespace physpool::vfio {

absl::StatusOr<Backing> CreatePosixBacking(BackingKind kind,
                                           const std::string& path,
                                           uint64_t bytes, uint64_t page_size,
                                           int32_t numa, bool reattach);
// Faults every page of fresh backing in, through the daemon's mapping and
// so under its mbind() to `numa`: hugetlb has no shared policy, so a page
// first touched through another mapping (physpool-keeper's MAP_DMA, a
// udmabuf, a tenant) would be placed by that task's policy instead.
// RESOURCE_EXHAUSTED naming the node when it has no free pages.
absl::Status PopulatePosixBacking(const Backing& b, uint64_t page_size,
                                  int32_t numa);
absl::StatusOr<Backing> AdoptPosixBacking(int fd, const std::string& name,
                                          uint64_t bytes);
void ReleasePosixBacking(const Backing& b, bool remove);

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_BACKING_H_
