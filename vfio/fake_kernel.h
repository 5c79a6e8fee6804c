// SPDX-License-Identifier: Apache-2.0
// A fake VFIO kernel for tests: records groups, containers, mappings and
// devices, and answers bad calls with the errno the real type1v2 kernel
// gives (../shared/vfio-qemu/README.md, "MAP_DMA / UNMAP_DMA error codes").
// Backing memory is real (memfd or files), NUMA binding is recorded only.
// Not thread-safe: one test drives it.
#ifndef PHYSPOOL_VFIO_FAKE_KERNEL_H_
#define PHYSPOOL_VFIO_FAKE_KERNEL_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "vfio/backing.h"
#include "vfio/kernel.h"

namespace physpool::vfio {

class FakeKernel : public Kernel {
 public:
  struct Mapping {
    uint64_t bytes = 0;
    const void* vaddr = nullptr;
    int mm = 0;  // the process that made it (`mm` at the time)
  };

  // The QEMU q35 + intel-iommu answers: ranges around the MSI window up to
  // 39 address bits, 4K|2M|1G pages, 65535 mappings.
  FakeKernel();

  // Knobs a test sets before driving the source.
  std::map<std::string, int> device_groups;  // bdf -> IOMMU group
  std::vector<IovaRange> ranges;
  uint64_t page_sizes = 0x40201000;
  int64_t dma_limit = 65535;  // per container
  // The calling process. type1 lets only the process that made a mapping
  // unmap it: UNMAP_DMA stops at a mapping of another one and returns
  // what it unmapped so far, without an error (as the kernel does).
  int mm = 1;
  Memlock memlock{true, UINT64_MAX};
  std::map<int, int> busy_answers;  // group -> EBUSY answers left
  std::vector<std::string> holders;
  // udmabuf: usable unless set; each buffer is a fresh memfd of the total
  // size (it does not alias the backing: no DMA here to see through it).
  absl::Status udmabuf_usable;
  UdmabufInfo udmabuf_info{absl::OkStatus(), 64, 1024};

  // What the source did. mappings(): of every container (for tests with
  // one); mappings_of(group): of the container `group` is attached to.
  std::map<uint64_t, Mapping> mappings() const;
  std::map<uint64_t, Mapping> mappings_of(int group) const;
  int containers() const { return static_cast<int>(containers_.size()); }
  int open_fds() const { return static_cast<int>(fds_.size()); }
  int map_calls() const { return map_calls_; }
  const std::vector<std::vector<UdmabufRange>>& udmabufs() const {
    return udmabufs_;
  }
  bool bus_master(const std::string& bdf) const {
    return bus_master_.count(bdf) > 0;
  }
  int32_t numa_of(const std::string& backing_path) const;

  absl::StatusOr<int> OpenContainer() override;
  absl::StatusOr<int> GroupOf(const std::string& bdf) override;
  absl::StatusOr<int> OpenGroup(int group) override;
  absl::Status SetContainer(int group_fd, int container) override;
  absl::Status SetIommuType1v2(int container) override;
  absl::StatusOr<IommuInfo> GetIommuInfo(int container) override;
  absl::Status MapDma(int container, const void* vaddr, uint64_t iova,
                      uint64_t bytes) override;
  absl::StatusOr<uint64_t> UnmapDma(int container, uint64_t iova,
                                    uint64_t bytes) override;
  absl::StatusOr<int> OpenDevice(int group_fd, const std::string& bdf) override;
  absl::Status EnableBusMaster(int device_fd) override;
  absl::StatusOr<Memlock> GetMemlock() override { return memlock; }
  std::vector<std::string> VfioHolders() override { return holders; }
  absl::StatusOr<Backing> CreateBacking(BackingKind kind,
                                        const std::string& path, uint64_t bytes,
                                        uint64_t page_size, int32_t numa,
                                        bool reattach) override;
  absl::StatusOr<Backing> AdoptBacking(int fd, const std::string& name,
                                       uint64_t bytes) override {
    return AdoptPosixBacking(fd, name, bytes);
  }
  void ReleaseBacking(const Backing& b, bool remove) override;
  absl::StatusOr<int> CreateUdmabuf(
      const std::vector<UdmabufRange>& ranges) override;
  UdmabufInfo GetUdmabufInfo() override {
    UdmabufInfo i = udmabuf_info;
    i.usable = udmabuf_usable;
    return i;
  }
  absl::StatusOr<int> Dup(int fd) override;
  void Close(int fd) override;

 private:
  std::vector<std::vector<UdmabufRange>> udmabufs_;
  enum class Kind { kContainer, kGroup, kDevice };
  struct Fd {
    Kind kind;
    int group = -1;      // kGroup, kDevice
    std::string bdf;     // kDevice
    int container = -1;  // kContainer: which one (dups share it)
  };
  // One container: lives while a descriptor of it or an attached group
  // does.
  struct Container {
    std::set<int> groups;  // attached
    bool iommu_set = false;
    std::map<uint64_t, Mapping> mappings;  // by IOVA
  };
  int NewFd(Fd f);
  bool Is(int fd, Kind k) const;
  // The container of descriptor `fd`, or null.
  Container* ContainerOf(int fd);
  // Drops containers nothing refers to any more.
  void Collect();

  std::map<int, Fd> fds_;
  int next_fd_ = 1000;
  std::set<int> open_groups_;
  std::map<int, int> attached_;  // group -> container
  std::map<int, Container> containers_;
  int next_container_ = 1;
  int map_calls_ = 0;
  std::set<std::string> bus_master_;
  std::map<std::string, int32_t> numa_;  // backing path -> node
};

// Wraps a kernel and fails its Nth call (counting from 1; Close and
// ReleaseBacking are not counted: they cannot fail) with `err`, as the
// kernel would: nothing happens and the call returns ErrnoStatus.
class FaultyKernel : public Kernel {
 public:
  explicit FaultyKernel(Kernel* inner) : inner_(inner) {}
  void FailCall(int n, int err) {
    fail_at_ = n;
    err_ = err;
  }
  int calls() const { return calls_; }
  // The step name of the call that was failed ("" if none).
  const std::string& failed_step() const { return failed_; }

  absl::StatusOr<int> OpenContainer() override;
  absl::StatusOr<int> GroupOf(const std::string& bdf) override;
  absl::StatusOr<int> OpenGroup(int group) override;
  absl::Status SetContainer(int group_fd, int container) override;
  absl::Status SetIommuType1v2(int container) override;
  absl::StatusOr<IommuInfo> GetIommuInfo(int container) override;
  absl::Status MapDma(int container, const void* vaddr, uint64_t iova,
                      uint64_t bytes) override;
  absl::StatusOr<uint64_t> UnmapDma(int container, uint64_t iova,
                                    uint64_t bytes) override;
  absl::StatusOr<int> OpenDevice(int group_fd, const std::string& bdf) override;
  absl::Status EnableBusMaster(int device_fd) override;
  absl::StatusOr<Memlock> GetMemlock() override;
  std::vector<std::string> VfioHolders() override {
    return inner_->VfioHolders();
  }
  absl::StatusOr<Backing> CreateBacking(BackingKind kind,
                                        const std::string& path, uint64_t bytes,
                                        uint64_t page_size, int32_t numa,
                                        bool reattach) override;
  absl::StatusOr<Backing> AdoptBacking(int fd, const std::string& name,
                                       uint64_t bytes) override {
    return inner_->AdoptBacking(fd, name, bytes);
  }
  void ReleaseBacking(const Backing& b, bool remove) override {
    inner_->ReleaseBacking(b, remove);
  }
  absl::StatusOr<int> CreateUdmabuf(
      const std::vector<UdmabufRange>& ranges) override;
  UdmabufInfo GetUdmabufInfo() override { return inner_->GetUdmabufInfo(); }
  absl::StatusOr<int> Dup(int fd) override;
  void Close(int fd) override { inner_->Close(fd); }

 private:
  // OK, or the injected error for this call.
  absl::Status Next(const char* step);

  Kernel* inner_;
  int calls_ = 0;
  int fail_at_ = 0;
  int err_ = 0;
  std::string failed_;
};

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_FAKE_KERNEL_H_
