// SPDX-License-Identifier: Apache-2.0
// The one seam between physpool and the kernel's VFIO interface (legacy
// container/group API, type1v2 IOMMU) plus the backing memory it pins.
// LinuxKernel (linux_kernel.cc, the only file that includes <linux/vfio.h>
// and calls ioctl) is the real one; FakeKernel records mappings and answers
// with the errnos the real kernel gives; FaultyKernel fails the Nth call.
//
// Every failure is ErrnoStatus(step, errno) (util/errno_status.h): the
// code follows the errno and the message names the step, e.g.
// "VFIO_IOMMU_MAP_DMA iova=0x200000 size=0x200000: Invalid argument
// (errno 22)". ErrnoOf() gets the errno back.
#ifndef PHYSPOOL_VFIO_KERNEL_H_
#define PHYSPOOL_VFIO_KERNEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "util/errno_status.h"

namespace physpool::vfio {

// An IOVA range the IOMMU translates, inclusive as the kernel reports it.
struct IovaRange {
  uint64_t first = 0;
  uint64_t last = 0;
};

struct IommuInfo {
  std::vector<IovaRange> ranges;  // VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
  uint64_t page_sizes = 0;        // bitmap of supported IOMMU page sizes
  int64_t dma_avail = -1;         // mappings left; -1: not reported
};

struct Memlock {
  bool cap_ipc_lock = false;  // CAP_IPC_LOCK in the effective set
  uint64_t limit = 0;         // RLIMIT_MEMLOCK (soft); UINT64_MAX: unlimited
};

// kFile: a file in a directory; for pages above 4 KiB a hugetlbfs mount.
enum class BackingKind { kMemfd, kFile };

// Memory for one physseg, mapped into the daemon.
struct Backing {
  int fd = -1;
  uint8_t* base = nullptr;
  uint64_t bytes = 0;
  std::string path;      // kFile: the file; memfd: "memfd:<name>"
  bool created = false;  // false: an existing file was re-attached
};

// "0x1f" for log and error messages.
std::string Hex(uint64_t v);
// `s` with "<what>: " before its message; same code, and the payloads kept
// (so ErrnoOf still finds the errno).
absl::Status Annotate(const absl::Status& s, absl::string_view what);

class Kernel {
 public:
  virtual ~Kernel() = default;

  // Opens /dev/vfio/vfio; FAILED_PRECONDITION unless the API version is
  // VFIO_API_VERSION and the type1v2 IOMMU is available.
  virtual absl::StatusOr<int> OpenContainer() = 0;
  // The IOMMU group of PCI device `bdf` (sysfs iommu_group link).
  virtual absl::StatusOr<int> GroupOf(const std::string& bdf) = 0;
  // Opens /dev/vfio/<group>. A group opened elsewhere fails with EBUSY.
  virtual absl::StatusOr<int> OpenGroup(int group) = 0;
  // Checks the group is viable and attaches it to the container.
  virtual absl::Status SetContainer(int group_fd, int container) = 0;
  // REQUIRES: a group is attached.
  virtual absl::Status SetIommuType1v2(int container) = 0;
  virtual absl::StatusOr<IommuInfo> GetIommuInfo(int container) = 0;
  // Maps [iova, iova + bytes) onto the process memory at vaddr, read-write.
  virtual absl::Status MapDma(int container, const void* vaddr, uint64_t iova,
                              uint64_t bytes) = 0;
  // Unmaps whole mappings inside [iova, iova + bytes) (none there is not
  // an error) and returns the bytes unmapped. type1 lets only the process
  // that made a mapping unmap it: at a mapping made by another process
  // (e.g. a daemon that died) the kernel stops and returns less, without
  // an error; callers compare.
  virtual absl::StatusOr<uint64_t> UnmapDma(int container, uint64_t iova,
                                            uint64_t bytes) = 0;
  virtual absl::StatusOr<int> OpenDevice(int group_fd,
                                         const std::string& bdf) = 0;
  // Sets PCI_COMMAND memory decode + bus master (vfio-pci leaves bus
  // mastering off, and DMA then silently does nothing).
  virtual absl::Status EnableBusMaster(int device_fd) = 0;
  virtual absl::StatusOr<Memlock> GetMemlock() = 0;
  // Processes other than this one that hold a VFIO group or device fd, as
  // "pid 57 (e2e_tenant)": who keeps a busy group open.
  virtual std::vector<std::string> VfioHolders() = 0;

  // Creates (or with `reattach`, opens the existing file of exactly
  // `bytes`) and maps the backing of one physseg. kFile: `path` is the
  // file; memfd: `path` is the name. Fresh backing (a new memfd, a file
  // truncated to 0 and back) reads as zeros; the kernel allocates its
  // pages at first touch (MAP_DMA pins them) under the NUMA binding to
  // `numa` (mbind; -1: none) set here.
  virtual absl::StatusOr<Backing> CreateBacking(
      BackingKind kind, const std::string& path, uint64_t bytes,
      uint64_t page_size, int32_t numa, bool reattach) = 0;
  // Maps the memfd `fd` of exactly `bytes` that an earlier daemon created
  // (kept for it by physpool-keeper, vfio/fd_stash.h), as it is: the
  // Backing takes `fd` over, also on error (it is then closed).
  virtual absl::StatusOr<Backing> AdoptBacking(int fd, const std::string& name,
                                               uint64_t bytes) = 0;
  // Unmaps and closes; with `remove`, deletes a kFile file too.
  virtual void ReleaseBacking(const Backing& b, bool remove) = 0;
  // udmabuf (per-lease views): a dma-buf of the memfd ranges, back to
  // back, read-write and mappable (UDMABUF_CREATE_LIST). Each memfd is
  // sealed against shrinking (CreateBacking does that).
  struct UdmabufRange {
    int memfd = -1;
    uint64_t offset = 0;
    uint64_t bytes = 0;
  };
  virtual absl::StatusOr<int> CreateUdmabuf(
      const std::vector<UdmabufRange>& ranges) = 0;
  // Whether /dev/udmabuf opens, and the module's limits
  // (/sys/module/udmabuf/parameters: size_limit_mb per buffer, list_limit
  // ranges per buffer; 0 where not readable).
  struct UdmabufInfo {
    absl::Status usable;
    uint64_t size_limit_mb = 0;
    uint64_t list_limit = 0;
  };
  virtual UdmabufInfo GetUdmabufInfo() = 0;
  // A new descriptor of the same open file (a device fd for a tenant).
  virtual absl::StatusOr<int> Dup(int fd) = 0;
  virtual void Close(int fd) = 0;
};

// The real kernel.
Kernel* LinuxKernel();

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_KERNEL_H_
