// SPDX-License-Identifier: Apache-2.0
#include "vfio/fake_kernel.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "vfio/backing.h"

namespace physpool::vfio {

FakeKernel::FakeKernel()
    : ranges{{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}} {}

int FakeKernel::NewFd(Fd f) {
  fds_[next_fd_] = std::move(f);
  return next_fd_++;
}

bool FakeKernel::Is(int fd, Kind k) const {
  auto it = fds_.find(fd);
  return it != fds_.end() && it->second.kind == k;
}

int32_t FakeKernel::numa_of(const std::string& backing_path) const {
  auto it = numa_.find(backing_path);
  return it == numa_.end() ? -2 : it->second;
}

FakeKernel::Container* FakeKernel::ContainerOf(int fd) {
  auto it = fds_.find(fd);
  if (it == fds_.end() || it->second.kind != Kind::kContainer) return nullptr;
  auto c = containers_.find(it->second.container);
  return c == containers_.end() ? nullptr : &c->second;
}

void FakeKernel::Collect() {
  for (auto it = containers_.begin(); it != containers_.end();) {
    bool held = !it->second.groups.empty();
    for (const auto& [n, f] : fds_)
      held |= f.kind == Kind::kContainer && f.container == it->first;
    it = held ? std::next(it) : containers_.erase(it);
  }
}

std::map<uint64_t, FakeKernel::Mapping> FakeKernel::mappings() const {
  std::map<uint64_t, Mapping> out;
  for (const auto& [id, c] : containers_)
    out.insert(c.mappings.begin(), c.mappings.end());
  return out;
}

std::map<uint64_t, FakeKernel::Mapping> FakeKernel::mappings_of(
    int group) const {
  auto a = attached_.find(group);
  if (a == attached_.end()) return {};
  return containers_.at(a->second).mappings;
}

absl::StatusOr<int> FakeKernel::OpenContainer() {
  containers_[next_container_] = {};
  return NewFd({Kind::kContainer, -1, "", next_container_++});
}

absl::StatusOr<int> FakeKernel::GroupOf(const std::string& bdf) {
  auto it = device_groups.find(bdf);
  if (it == device_groups.end()) {
    return ErrnoStatus(
        absl::StrCat("readlink /sys/bus/pci/devices/", bdf, "/iommu_group"),
        ENOENT);
  }
  return it->second;
}

absl::StatusOr<int> FakeKernel::OpenGroup(int group) {
  const std::string step = absl::StrCat("open /dev/vfio/", group);
  bool known = false;
  for (const auto& [bdf, g] : device_groups) known |= g == group;
  if (!known) return ErrnoStatus(step, ENOENT);
  if (open_groups_.count(group)) return ErrnoStatus(step, EBUSY);
  if (auto b = busy_answers.find(group);
      b != busy_answers.end() && b->second > 0) {
    --b->second;
    return ErrnoStatus(step, EBUSY);
  }
  open_groups_.insert(group);
  return NewFd({Kind::kGroup, group, ""});
}

absl::Status FakeKernel::SetContainer(int group_fd, int container) {
  Container* c = ContainerOf(container);
  if (!Is(group_fd, Kind::kGroup) || c == nullptr) {
    return ErrnoStatus("VFIO_GROUP_SET_CONTAINER", EBADF);
  }
  const int group = fds_[group_fd].group;
  if (attached_.count(group)) {
    return ErrnoStatus("VFIO_GROUP_SET_CONTAINER", EINVAL);
  }
  attached_[group] = fds_[container].container;
  c->groups.insert(group);
  return absl::OkStatus();
}

absl::Status FakeKernel::SetIommuType1v2(int container) {
  Container* c = ContainerOf(container);
  if (c == nullptr || c->groups.empty()) {
    return ErrnoStatus("VFIO_SET_IOMMU type1v2", EINVAL);
  }
  if (c->iommu_set) return ErrnoStatus("VFIO_SET_IOMMU type1v2", EBUSY);
  c->iommu_set = true;
  return absl::OkStatus();
}

absl::StatusOr<IommuInfo> FakeKernel::GetIommuInfo(int container) {
  Container* c = ContainerOf(container);
  if (c == nullptr || !c->iommu_set) {
    return ErrnoStatus("VFIO_IOMMU_GET_INFO", EINVAL);
  }
  IommuInfo info;
  info.ranges = ranges;
  info.page_sizes = page_sizes;
  info.dma_avail = dma_limit - static_cast<int64_t>(c->mappings.size());
  return info;
}

absl::Status FakeKernel::MapDma(int container, const void* vaddr, uint64_t iova,
                                uint64_t bytes) {
  ++map_calls_;
  const std::string step =
      absl::StrCat("VFIO_IOMMU_MAP_DMA iova=", Hex(iova), " size=", Hex(bytes));
  const uint64_t min_page = page_sizes & -page_sizes;
  const uint64_t va = reinterpret_cast<uint64_t>(vaddr);
  Container* c = ContainerOf(container);
  if (c == nullptr || !c->iommu_set || bytes == 0 || iova % min_page ||
      bytes % min_page || va % min_page || iova + bytes - 1 < iova) {
    return ErrnoStatus(step, EINVAL);
  }
  if (vaddr == nullptr) return ErrnoStatus(step, EFAULT);
  bool inside = false;
  for (const IovaRange& r : ranges) {
    inside |= iova >= r.first && iova + bytes - 1 <= r.last;
  }
  if (!inside) return ErrnoStatus(step, EINVAL);
  std::map<uint64_t, Mapping>& maps = c->mappings;
  auto next = maps.lower_bound(iova);
  if (next != maps.end() && next->first < iova + bytes) {
    return ErrnoStatus(step, EEXIST);
  }
  if (next != maps.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.bytes > iova) {
      return ErrnoStatus(step, EEXIST);
    }
  }
  if (static_cast<int64_t>(maps.size()) >= dma_limit) {
    return ErrnoStatus(step, ENOSPC);
  }
  maps[iova] = {bytes, vaddr, mm};
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FakeKernel::UnmapDma(int container, uint64_t iova,
                                              uint64_t bytes) {
  const std::string step = absl::StrCat("VFIO_IOMMU_UNMAP_DMA iova=", Hex(iova),
                                        " size=", Hex(bytes));
  Container* c = ContainerOf(container);
  if (c == nullptr || bytes == 0) return ErrnoStatus(step, EINVAL);
  const uint64_t end = iova + bytes;
  std::map<uint64_t, Mapping>& maps = c->mappings;
  // v2 refuses to cut a mapping: every mapping touched must lie inside.
  for (const auto& [at, m] : maps) {
    const bool touches = at < end && at + m.bytes > iova;
    if (touches && (at < iova || at + m.bytes > end)) {
      return ErrnoStatus(step, EINVAL);
    }
  }
  uint64_t unmapped = 0;
  for (auto it = maps.lower_bound(iova); it != maps.end() && it->first < end;) {
    if (it->second.mm != mm) break;  // another process's: the kernel stops
    unmapped += it->second.bytes;
    it = maps.erase(it);
  }
  return unmapped;
}

absl::StatusOr<int> FakeKernel::OpenDevice(int group_fd,
                                           const std::string& bdf) {
  const std::string step = "VFIO_GROUP_GET_DEVICE_FD " + bdf;
  if (!Is(group_fd, Kind::kGroup)) return ErrnoStatus(step, EBADF);
  const int group = fds_[group_fd].group;
  auto it = device_groups.find(bdf);
  if (it == device_groups.end() || it->second != group) {
    return ErrnoStatus(step, ENODEV);
  }
  auto a = attached_.find(group);
  if (a == attached_.end() || !containers_[a->second].iommu_set) {
    return ErrnoStatus(step, EINVAL);
  }
  return NewFd({Kind::kDevice, group, bdf});
}

absl::Status FakeKernel::EnableBusMaster(int device_fd) {
  if (!Is(device_fd, Kind::kDevice))
    return ErrnoStatus("read PCI_COMMAND", EBADF);
  bus_master_.insert(fds_[device_fd].bdf);
  return absl::OkStatus();
}

absl::StatusOr<Backing> FakeKernel::CreateBacking(BackingKind kind,
                                                  const std::string& path,
                                                  uint64_t bytes,
                                                  uint64_t page_size,
                                                  int32_t numa, bool reattach) {
  // Real memory, at 4 KiB pages: the host running the tests has no
  // hugepages reserved, and binding to a node it lacks would fail.
  (void)page_size;
  auto b = CreatePosixBacking(kind, path, bytes, 4096, -1, reattach);
  if (b.ok()) numa_[b->path] = numa;
  return b;
}

void FakeKernel::ReleaseBacking(const Backing& b, bool remove) {
  numa_.erase(b.path);
  ReleasePosixBacking(b, remove);
}

absl::StatusOr<int> FakeKernel::CreateUdmabuf(
    const std::vector<UdmabufRange>& ranges) {
  if (!udmabuf_usable.ok()) return udmabuf_usable;
  uint64_t total = 0;
  for (const UdmabufRange& r : ranges) {
    struct stat st;
    const int seals = fcntl(r.memfd, F_GET_SEALS);
    if (fstat(r.memfd, &st) != 0 || seals < 0 || !(seals & F_SEAL_SHRINK) ||
        r.offset + r.bytes > uint64_t(st.st_size) || r.bytes == 0) {
      return ErrnoStatus("UDMABUF_CREATE_LIST", EINVAL);
    }
    total += r.bytes;
  }
  const int fd = memfd_create("fake-udmabuf", MFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus("memfd_create", errno);
  if (ftruncate(fd, off_t(total)) != 0) {
    close(fd);
    return ErrnoStatus("ftruncate", errno);
  }
  udmabufs_.push_back(ranges);
  return fd;
}

absl::StatusOr<int> FakeKernel::Dup(int fd) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) return ErrnoStatus("dup", EBADF);
  return NewFd(it->second);
}

void FakeKernel::Close(int fd) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) return;
  const Fd f = it->second;
  fds_.erase(it);
  if (f.kind == Kind::kDevice) bus_master_.erase(f.bdf);
  if (f.kind == Kind::kContainer) return Collect();
  // A device fd keeps its group open, as in the kernel.
  for (const auto& [n, other] : fds_) {
    if (other.kind != Kind::kContainer && other.group == f.group) return;
  }
  open_groups_.erase(f.group);
  if (auto a = attached_.find(f.group); a != attached_.end()) {
    Container& c = containers_[a->second];
    c.groups.erase(f.group);
    if (c.groups.empty()) {  // the container loses its IOMMU
      c.mappings.clear();
      c.iommu_set = false;
    }
    attached_.erase(a);
  }
  Collect();
}

absl::Status FaultyKernel::Next(const char* step) {
  if (++calls_ != fail_at_) return absl::OkStatus();
  failed_ = step;
  return ErrnoStatus(absl::StrCat(step, " (injected)"), err_);
}

#define PHYSPOOL_FAULT(step) \
  if (absl::Status s = Next(step); !s.ok()) return s

absl::StatusOr<int> FaultyKernel::OpenContainer() {
  PHYSPOOL_FAULT("open /dev/vfio/vfio");
  return inner_->OpenContainer();
}
absl::StatusOr<int> FaultyKernel::GroupOf(const std::string& bdf) {
  PHYSPOOL_FAULT("readlink iommu_group");
  return inner_->GroupOf(bdf);
}
absl::StatusOr<int> FaultyKernel::OpenGroup(int group) {
  PHYSPOOL_FAULT("open group");
  return inner_->OpenGroup(group);
}
absl::Status FaultyKernel::SetContainer(int group_fd, int container) {
  PHYSPOOL_FAULT("VFIO_GROUP_SET_CONTAINER");
  return inner_->SetContainer(group_fd, container);
}
absl::Status FaultyKernel::SetIommuType1v2(int container) {
  PHYSPOOL_FAULT("VFIO_SET_IOMMU");
  return inner_->SetIommuType1v2(container);
}
absl::StatusOr<IommuInfo> FaultyKernel::GetIommuInfo(int container) {
  PHYSPOOL_FAULT("VFIO_IOMMU_GET_INFO");
  return inner_->GetIommuInfo(container);
}
absl::Status FaultyKernel::MapDma(int container, const void* vaddr,
                                  uint64_t iova, uint64_t bytes) {
  PHYSPOOL_FAULT("VFIO_IOMMU_MAP_DMA");
  return inner_->MapDma(container, vaddr, iova, bytes);
}
absl::StatusOr<uint64_t> FaultyKernel::UnmapDma(int container, uint64_t iova,
                                                uint64_t bytes) {
  PHYSPOOL_FAULT("VFIO_IOMMU_UNMAP_DMA");
  return inner_->UnmapDma(container, iova, bytes);
}
absl::StatusOr<int> FaultyKernel::OpenDevice(int group_fd,
                                             const std::string& bdf) {
  PHYSPOOL_FAULT("VFIO_GROUP_GET_DEVICE_FD");
  return inner_->OpenDevice(group_fd, bdf);
}
absl::Status FaultyKernel::EnableBusMaster(int device_fd) {
  PHYSPOOL_FAULT("PCI_COMMAND");
  return inner_->EnableBusMaster(device_fd);
}
absl::StatusOr<Memlock> FaultyKernel::GetMemlock() {
  PHYSPOOL_FAULT("getrlimit RLIMIT_MEMLOCK");
  return inner_->GetMemlock();
}
absl::StatusOr<Backing> FaultyKernel::CreateBacking(
    BackingKind kind, const std::string& path, uint64_t bytes,
    uint64_t page_size, int32_t numa, bool reattach) {
  PHYSPOOL_FAULT("create backing");
  return inner_->CreateBacking(kind, path, bytes, page_size, numa, reattach);
}

absl::StatusOr<int> FaultyKernel::CreateUdmabuf(
    const std::vector<UdmabufRange>& ranges) {
  PHYSPOOL_FAULT("UDMABUF_CREATE_LIST");
  return inner_->CreateUdmabuf(ranges);
}

absl::StatusOr<int> FaultyKernel::Dup(int fd) {
  PHYSPOOL_FAULT("dup");
  return inner_->Dup(fd);
}

#undef PHYSPOOL_FAULT

}  // namespace physpool::vfio
