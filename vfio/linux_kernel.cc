// SPDX-License-Identifier: Apache-2.0
// The real kernel: the only file in physpool that includes <linux/vfio.h>
// or <linux/udmabuf.h> and calls ioctl.
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/pci_regs.h>
#include <linux/udmabuf.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "vfio/backing.h"
#include "vfio/kernel.h"

namespace physpool::vfio {
namespace {

class Linux final : public Kernel {
 public:
  absl::StatusOr<int> OpenContainer() override {
    const int fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open /dev/vfio/vfio", errno);
    const int api = ioctl(fd, VFIO_GET_API_VERSION);
    if (api != VFIO_API_VERSION) {
      close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("VFIO_GET_API_VERSION: ", api, ", physpool needs ",
                       VFIO_API_VERSION));
    }
    if (ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1) {
      close(fd);
      return absl::FailedPreconditionError(
          "VFIO_CHECK_EXTENSION: the type1v2 IOMMU is not available (is "
          "vfio_iommu_type1 loaded and the IOMMU on: intel_iommu=on?)");
    }
    return fd;
  }

  absl::StatusOr<int> GroupOf(const std::string& bdf) override {
    const std::string link = "/sys/bus/pci/devices/" + bdf + "/iommu_group";
    char buf[PATH_MAX] = {};
    if (readlink(link.c_str(), buf, sizeof(buf) - 1) < 0) {
      return ErrnoStatus("readlink " + link, errno);
    }
    const char* slash = std::strrchr(buf, '/');
    int group = 0;
    if (!slash || !absl::SimpleAtoi(slash + 1, &group)) {
      return absl::InternalError(absl::StrCat(link, " -> ", buf));
    }
    return group;
  }

  absl::StatusOr<int> OpenGroup(int group) override {
    const std::string path = absl::StrCat("/dev/vfio/", group);
    const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open " + path, errno);
    return fd;
  }

  absl::Status SetContainer(int group_fd, int container) override {
    vfio_group_status st = {};
    st.argsz = sizeof(st);
    if (ioctl(group_fd, VFIO_GROUP_GET_STATUS, &st) != 0) {
      return ErrnoStatus("VFIO_GROUP_GET_STATUS", errno);
    }
    if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
      return absl::FailedPreconditionError(
          "VFIO_GROUP_GET_STATUS: group not viable (bind every device of "
          "the group to vfio-pci)");
    }
    if (ioctl(group_fd, VFIO_GROUP_SET_CONTAINER, &container) != 0) {
      return ErrnoStatus("VFIO_GROUP_SET_CONTAINER", errno);
    }
    return absl::OkStatus();
  }

  absl::Status SetIommuType1v2(int container) override {
    if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) != 0) {
      return ErrnoStatus("VFIO_SET_IOMMU type1v2", errno);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<IommuInfo> GetIommuInfo(int container) override {
    std::vector<uint8_t> buf(sizeof(vfio_iommu_type1_info));
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
      info->argsz = buf.size();
      if (ioctl(container, VFIO_IOMMU_GET_INFO, info) != 0) {
        return ErrnoStatus("VFIO_IOMMU_GET_INFO", errno);
      }
      if (info->argsz <= buf.size()) break;
      buf.assign(info->argsz, 0);  // room for the capability chain
    }
    const auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
    IommuInfo out;
    if (info->flags & VFIO_IOMMU_INFO_PGSIZES)
      out.page_sizes = info->iova_pgsizes;
    uint32_t off = (info->flags & VFIO_IOMMU_INFO_CAPS) ? info->cap_offset : 0;
    while (off != 0 && off + sizeof(vfio_info_cap_header) <= buf.size()) {
      const auto* hdr =
          reinterpret_cast<const vfio_info_cap_header*>(buf.data() + off);
      if (hdr->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
        const auto* c =
            reinterpret_cast<const vfio_iommu_type1_info_cap_iova_range*>(hdr);
        for (uint32_t i = 0; i < c->nr_iovas; ++i) {
          out.ranges.push_back(
              {c->iova_ranges[i].start, c->iova_ranges[i].end});
        }
      } else if (hdr->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
        out.dma_avail =
            reinterpret_cast<const vfio_iommu_type1_info_dma_avail*>(hdr)
                ->avail;
      }
      if (hdr->next <= off) break;  // the chain only moves forward
      off = hdr->next;
    }
    return out;
  }

  absl::Status MapDma(int container, const void* vaddr, uint64_t iova,
                      uint64_t bytes) override {
    vfio_iommu_type1_dma_map m = {};
    m.argsz = sizeof(m);
    m.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    m.vaddr = reinterpret_cast<uint64_t>(vaddr);
    m.iova = iova;
    m.size = bytes;
    if (ioctl(container, VFIO_IOMMU_MAP_DMA, &m) != 0) {
      return ErrnoStatus(absl::StrCat("VFIO_IOMMU_MAP_DMA iova=", Hex(iova),
                                      " size=", Hex(bytes)),
                         errno);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> UnmapDma(int container, uint64_t iova,
                                    uint64_t bytes) override {
    vfio_iommu_type1_dma_unmap u = {};
    u.argsz = sizeof(u);
    u.iova = iova;
    u.size = bytes;
    if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &u) != 0) {
      return ErrnoStatus(absl::StrCat("VFIO_IOMMU_UNMAP_DMA iova=", Hex(iova),
                                      " size=", Hex(bytes)),
                         errno);
    }
    return uint64_t{u.size};  // the kernel writes back what it unmapped
  }

  absl::StatusOr<int> OpenDevice(int group_fd,
                                 const std::string& bdf) override {
    const int fd = ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, bdf.c_str());
    if (fd < 0) return ErrnoStatus("VFIO_GROUP_GET_DEVICE_FD " + bdf, errno);
    return fd;
  }

  absl::Status EnableBusMaster(int device_fd) override {
    vfio_region_info ri = {};
    ri.argsz = sizeof(ri);
    ri.index = VFIO_PCI_CONFIG_REGION_INDEX;
    if (ioctl(device_fd, VFIO_DEVICE_GET_REGION_INFO, &ri) != 0) {
      return ErrnoStatus("VFIO_DEVICE_GET_REGION_INFO config", errno);
    }
    uint16_t cmd = 0;
    const off_t at = off_t(ri.offset + PCI_COMMAND);
    if (pread(device_fd, &cmd, 2, at) != 2) {
      return ErrnoStatus("read PCI_COMMAND", errno);
    }
    cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    if (pwrite(device_fd, &cmd, 2, at) != 2) {
      return ErrnoStatus("write PCI_COMMAND", errno);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Memlock> GetMemlock() override {
    Memlock m;
    rlimit rl = {};
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
      return ErrnoStatus("getrlimit RLIMIT_MEMLOCK", errno);
    }
    m.limit = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2] = {};
    if (syscall(SYS_capget, &h, d) != 0) return ErrnoStatus("capget", errno);
    m.cap_ipc_lock =
        d[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32));
    return m;
  }

  std::vector<std::string> VfioHolders() override {
    std::vector<std::string> out;
    DIR* proc = opendir("/proc");
    if (!proc) return out;
    const std::string self = absl::StrCat(getpid());
    while (dirent* e = readdir(proc)) {
      int pid = 0;
      if (!absl::SimpleAtoi(e->d_name, &pid) || self == e->d_name) continue;
      const std::string fds = absl::StrCat("/proc/", pid, "/fd");
      DIR* d = opendir(fds.c_str());
      if (!d) continue;
      bool holds = false;
      while (dirent* f = readdir(d)) {
        char target[256] = {};
        const std::string link = fds + "/" + f->d_name;
        if (readlink(link.c_str(), target, sizeof(target) - 1) <= 0) continue;
        const std::string t = target;
        if (t == "anon_inode:[vfio-device]" ||
            (t.rfind("/dev/vfio/", 0) == 0 && t != "/dev/vfio/vfio")) {
          holds = true;
        }
      }
      closedir(d);
      if (!holds) continue;
      std::ifstream comm(absl::StrCat("/proc/", pid, "/comm"));
      std::string name;
      std::getline(comm, name);
      out.push_back(absl::StrCat("pid ", pid, " (", name, ")"));
    }
    closedir(proc);
    return out;
  }

  absl::StatusOr<Backing> CreateBacking(BackingKind kind,
                                        const std::string& path, uint64_t bytes,
                                        uint64_t page_size, int32_t numa,
                                        bool reattach) override {
    absl::StatusOr<Backing> b =
        CreatePosixBacking(kind, path, bytes, page_size, numa, reattach);
    if (!b.ok() || numa < 0 || reattach) return b;
    // The fake kernel does not: its tests' pools are large and sparse.
    if (absl::Status s = PopulatePosixBacking(*b, page_size, numa); !s.ok()) {
      ReleasePosixBacking(*b, /*remove=*/true);
      return s;
    }
    return b;
  }
  absl::StatusOr<Backing> AdoptBacking(int fd, const std::string& name,
                                       uint64_t bytes) override {
    return AdoptPosixBacking(fd, name, bytes);
  }
  void ReleaseBacking(const Backing& b, bool remove) override {
    ReleasePosixBacking(b, remove);
  }
  absl::StatusOr<int> CreateUdmabuf(
      const std::vector<UdmabufRange>& ranges) override {
    const int dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
    if (dev < 0) return ErrnoStatus("open /dev/udmabuf", errno);
    std::vector<char> buf(sizeof(udmabuf_create_list) +
                          ranges.size() * sizeof(udmabuf_create_item));
    auto* list = reinterpret_cast<udmabuf_create_list*>(buf.data());
    list->flags = UDMABUF_FLAGS_CLOEXEC;
    list->count = static_cast<__u32>(ranges.size());
    for (size_t i = 0; i < ranges.size(); ++i) {
      list->list[i].memfd = static_cast<__u32>(ranges[i].memfd);
      list->list[i].offset = ranges[i].offset;
      list->list[i].size = ranges[i].bytes;
    }
    const int fd = ioctl(dev, UDMABUF_CREATE_LIST, list);
    const int err = errno;
    close(dev);
    if (fd < 0) {
      return ErrnoStatus(
          absl::StrCat("UDMABUF_CREATE_LIST of ", ranges.size(), " ranges"),
          err);
    }
    return fd;
  }

  UdmabufInfo GetUdmabufInfo() override {
    UdmabufInfo info;
    const int dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
    if (dev < 0) {
      info.usable = ErrnoStatus("open /dev/udmabuf", errno);
    } else {
      close(dev);
    }
    auto read_param = [](const char* name) -> uint64_t {
      std::ifstream f(absl::StrCat("/sys/module/udmabuf/parameters/", name));
      uint64_t v = 0;
      f >> v;
      return v;
    };
    info.size_limit_mb = read_param("size_limit_mb");
    info.list_limit = read_param("list_limit");
    return info;
  }

  absl::StatusOr<int> Dup(int fd) override {
    const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return ErrnoStatus("dup", errno);
    return copy;
  }
  void Close(int fd) override { close(fd); }
};

}  // namespace

Kernel* LinuxKernel() {
  static Linux* k = new Linux;
  return k;
}

}  // namespace physpool::vfio
