// SPDX-License-Identifier: Apache-2.0
// The real memory source: binds PCI devices through VFIO (one type1v2
// container for the pool-wide ones), lays physsegs inside the IOMMU's IOVA
// ranges (iova_layout.h), backs each with memfd or a hugetlbfs file and
// maps it with one VFIO_IOMMU_MAP_DMA call. Tenant devices get IOMMU
// domains of their own (DeviceDomains, device_domains.h), into which only
// their tenant's leases are mapped. All kernel calls go through a Kernel
// (kernel.h), so every step and every rollback is tested with a fake.
// See docs/vfio.md.
//
// The implementation is split by concept: vfio_source.cc (Start in named
// phases, teardown), vfio_stash.cc (what physpool-keeper holds),
// vfio_segments.cc (physsegs), vfio_views.cc (udmabuf views),
// vfio_domains.cc (leases in the device domains).
#ifndef PHYSPOOL_VFIO_VFIO_SOURCE_H_
#define PHYSPOOL_VFIO_VFIO_SOURCE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "vfio/device_domains.h"
#include "vfio/fd_stash.h"
#include "vfio/iova_layout.h"
#include "vfio/kernel.h"
#include "vfio/memory_source.h"
#include "vfio/stash_ops.h"
#include "vfio/undo.h"

namespace physpool::vfio {

struct VfioConfig {
  std::vector<VfioDevice> devices;
  BackingKind backing = BackingKind::kFile;
  // kFile: where the backing files live; for pages above 4 KiB a hugetlbfs
  // mount with that page size.
  std::string dir = "/dev/hugepages/physpool";
  // How long Start waits for a group another process holds (a tenant that
  // kept a device fd of the previous daemon) before giving up.
  absl::Duration group_busy_timeout = absl::Seconds(30);
  LayoutConfig layout;  // page size, pool per NUMA node, limits (filled
                        // from `devices`)
  // The socket of physpool-keeper (source.vfio.keeper; "" = none): the
  // daemon connects to it and sets `stash`.
  std::string keeper;
  // physpool-keeper, or null. Not owned; outlives the source.
  // With one, the container, groups, device fds, memfd backing and views
  // are stashed there as they are made, and the source never unmaps at
  // exit: memfd memory and its IOMMU mappings outlive the daemon, and the
  // next one takes them back (docs/vfio.md, "Restart with isolation on").
  FdStash* stash = nullptr;
};

class VfioSource final : public MemorySource {
 public:
  // `notice` receives warnings worth logging while Start waits (the daemon
  // wires it to its log). `kernel` must outlive the source.
  VfioSource(VfioConfig config, Kernel* kernel,
             std::function<void(const std::string&)> notice = nullptr);
  // Unmaps and closes everything; backing files stay (a restart
  // re-attaches them). With a stash nothing is unmapped: the stash keeps
  // the container, its mappings and the memory.
  ~VfioSource() override;

  std::string name() const override { return "vfio"; }
  uint64_t page_size() const override { return config_.layout.page_size; }
  // Steps, each a Status naming the call, IOVA and errno on failure, and
  // each undone if a later one fails: memlock check, container, groups
  // (EBUSY: waits up to group_busy_timeout naming the holders), type1v2,
  // IOMMU info (ranges, page sizes, DMA entries), layout, backing + one
  // MAP_DMA per physseg, device fds + bus mastering. With a stash and
  // keep_contents, what the stash holds is taken back instead: the
  // container with its groups and mappings, the devices, each physseg's
  // memfd (no MAP_DMA: the IOVAs are mapped already), the views; a
  // physseg the stash lacks is an error. Without keep_contents, whatever
  // the stash holds is dropped first (the memory of void leases).
  using MemorySource::Start;
  absl::Status Start(bool keep_contents) override;
  std::string Layout() const override;
  bool persistent() const override {
    return config_.backing == BackingKind::kFile || config_.stash != nullptr;
  }
  const std::vector<BackedSegment>& segments() const override {
    return segments_;
  }
  std::vector<IovaRange> iova_ranges() const override { return ranges_; }
  std::vector<VfioDevice> devices() const override { return config_.devices; }
  // DMA entries the container had left after Start.
  int64_t dma_avail() const { return dma_avail_; }
  // Where Start's time went: creating and zeroing the backing, and the
  // MAP_DMA calls (which pin the pages).
  struct Timings {
    absl::Duration backing;
    absl::Duration map_dma;
    int map_calls = 0;
  };
  Timings timings() const { return timings_; }

  absl::StatusOr<BackedSegment> AddSegment(uint64_t bytes, uint32_t freelist,
                                           int32_t numa) override;
  absl::StatusOr<BackedSegment> RestoreSegment(const BackedSegment& seg,
                                               bool keep_contents) override;
  absl::Status RemoveSegment(uint64_t iova) override;
  absl::Status Zero(uint64_t iova, uint64_t bytes) override;
  absl::StatusOr<int> BackingFd(uint64_t iova) override;
  absl::StatusOr<int> DeviceFd(const std::string& bdf) override;

  // Views are udmabufs over the memfd backing (UDMABUF_CREATE_LIST): one
  // dma-buf per lease mapping its runs back to back, importable by other
  // drivers. Needs backing: memfd and /dev/udmabuf (checked by Start);
  // views die with their last descriptor or mapping (not persistent).
  // Device domains: a type1 container per IOMMU group of tenant devices
  // (pool-wide devices share the pool's container, which maps every
  // physseg whole). With a stash, every MAP_DMA / UNMAP_DMA is the
  // stash's (FdStash::MapDma), so a later daemon can undo them.
  bool HasDevices(const std::string& tenant) const override;
  absl::Status MapLease(const std::string& tenant,
                        const std::vector<ViewRange>& runs) override;
  absl::Status UnmapLease(const std::string& tenant,
                          const std::vector<ViewRange>& runs) override;
  absl::StatusOr<Reconciled> Reconcile(
      const std::vector<LiveLease>& live) override;
  std::vector<DeviceDomain> DeviceDomains() const override;

  absl::Status ViewSupport() const override { return view_support_; }
  absl::StatusOr<int> CreateView(const std::string& name,
                                 const std::vector<ViewRange>& runs) override;
  // With a stash, views are kept there too, so they are persistent: the
  // next daemon finds the views of live and ended leases (and who holds
  // them) with ViewNames / OpenView.
  absl::StatusOr<int> OpenView(const std::string& name) override;
  int64_t ViewOwnReferences(const std::string& name) const override;
  void DestroyView(const std::string& name) override;
  std::vector<std::string> ViewNames() override;
  // The udmabuf module's limits Start read (0 = unknown).
  Kernel::UdmabufInfo udmabuf_info() const { return udmabuf_; }

 private:
  struct Mapped {
    Backing backing;
    uint32_t freelist = 0;
    int32_t numa = 0;
  };
  // Start's phases, in order (TakeStash comes second); those given `undo`
  // push onto it how to undo what they made, and it runs unless Start
  // commits.
  //
  // The memlock limit (checked against the pool), the backing directory,
  // and whether views work (view_support_).
  absl::StatusOr<Memlock> CheckLimits();
  // The pool's container, for pool-wide devices (none from the stash).
  absl::Status OpenPoolContainer(Undo* undo);
  // Each device's group (`group_of`, by bdf) into the pool's container or
  // its tenant's domain; the tenant domains the stash holds.
  absl::Status OpenGroups(Undo* undo, std::map<std::string, int>* group_of);
  // Opens the group of device `d`, the first of its group, and puts it in
  // its container.
  absl::Status AttachGroup(const VfioDevice& d, int group, bool* pool_iommu_set,
                           Undo* undo);
  absl::StatusOr<int> OpenGroupWaiting(int group);
  // The IOVA ranges every container translates, and the pool container's
  // IOMMU info; sets the domains' DMA entries left.
  absl::Status IommuRanges(std::vector<IovaRange>* ranges,
                           std::optional<IommuInfo>* pool_info);
  // Lays out and maps the physsegs; returns how many there are.
  absl::StatusOr<int64_t> MapSegments(const std::vector<IovaRange>& ranges,
                                      const std::optional<IommuInfo>& pool_info,
                                      bool keep_contents, Undo* undo);
  // Device fds (from the stash, or opened) with bus mastering on.
  absl::Status OpenDevices(const std::map<std::string, int>& group_of,
                           Undo* undo);

  // A lease's runs cut at physseg boundaries.
  absl::StatusOr<std::vector<DmaPiece>> PiecesOf(
      const std::vector<ViewRange>& runs) const;
  // Backs and maps one segment; on error nothing is left.
  absl::StatusOr<Mapped> MapSegment(const PlannedSegment& p, bool reattach);
  std::string BackingName(uint64_t iova) const;
  // Start's first step with a stash: takes back (keep_contents) or drops
  // what it holds.
  absl::Status TakeStash(bool keep_contents);
  // Drops each of `all` (a List()) from the stash and closes it.
  void DropStash(const std::map<std::string, int>& all);
  void CloseStashed(const std::string& name, int fd);
  // The memfd of the physseg at `iova` from the stash (keep_contents), or
  // none: then the backing is made.
  absl::StatusOr<Mapped> AdoptSegment(const PlannedSegment& p);
  BackedSegment Describe(uint64_t iova, const Mapped& m) const;
  void Teardown();

  const VfioConfig config_;
  Kernel* const kernel_;
  const std::function<void(const std::string&)> notice_;
  StashOps ops_;  // through config_.stash when there is one

  // Set by Start, then read-only except through the server's serialised
  // segment calls (AddSegment / RemoveSegment).
  bool started_ = false;
  int container_ = -1;  // the pool's (pool-wide devices); -1: none
  Memlock memlock_;
  std::map<int, int> group_fds_;           // group -> fd
  std::map<std::string, int> device_fds_;  // bdf -> fd
  std::vector<IovaRange> ranges_;
  int64_t dma_avail_ = -1;
  Timings timings_;
  std::vector<BackedSegment> segments_;
  absl::Status view_support_ = absl::FailedPreconditionError("not started");
  // From the stash at Start: physseg memfds not yet adopted, by IOVA.
  std::map<uint64_t, int> stashed_segments_;
  bool reattached_ = false;  // the container came from the stash
  Kernel::UdmabufInfo udmabuf_;

  // Read by Zero / BackingFd from any thread.
  mutable absl::Mutex mu_;
  std::map<uint64_t, Mapped> mapped_ ABSL_GUARDED_BY(mu_);  // by IOVA
  std::map<std::string, int> views_ ABSL_GUARDED_BY(mu_);   // stashed, by name

  // Tenant domains (their own lock; never taken together with mu_).
  // Qualified: DeviceDomains() is also a method here.
  vfio::DeviceDomains domains_;
};

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_VFIO_SOURCE_H_
