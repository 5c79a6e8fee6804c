// SPDX-License-Identifier: Apache-2.0
// Where the pool's memory comes from: segments at IOVAs, each backed by a
// file the tenants map (sim: tmpfs files; vfio: hugetlbfs or memfd mapped
// into an IOMMU container). The server allocates in these segments and
// zeroes memory through this interface.
#ifndef PHYSPOOL_VFIO_MEMORY_SOURCE_H_
#define PHYSPOOL_VFIO_MEMORY_SOURCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "pglist/physseg.h"
#include "vfio/kernel.h"

namespace physpool::vfio {

// A PCI device a source drives.
struct VfioDevice {
  std::string bdf;         // "0000:00:01.0"
  uint64_t dma_limit = 0;  // the device reaches IOVAs below this; 0 = all
  // The tenant the device belongs to: it reaches that tenant's leases
  // only, in an IOMMU domain of its group's own. "": pool-wide (the whole
  // pool; its fd goes to privileged tenants only).
  std::string tenant;
};

// A device's IOMMU domain as it stands (docs/vfio.md, "Device domains").
struct DeviceDomain {
  VfioDevice device;
  std::string domain;         // "pool" or "group-<n>"
  uint64_t mappings = 0;      // MAP_DMA entries in the domain
  uint64_t mapped_bytes = 0;  // bytes they map
  int64_t dma_avail = -1;     // entries left; -1: not reported
};

struct BackedSegment {
  pglist::SegmentSpec spec;  // IOVA, pages, freelist, NUMA node
  std::string path;          // the backing file tenants mmap
  uint64_t file_offset = 0;  // offset of spec.iova in that file
};

class MemorySource {
 public:
  virtual ~MemorySource() = default;

  virtual std::string name() const = 0;  // "sim", "vfio"
  virtual uint64_t page_size() const = 0;

  // Creates the backing (zeroed) and makes it DMA-visible. With
  // keep_contents (a restart with live leases) the backing of the same
  // layout is re-attached as it is, at the same IOVAs. On error nothing
  // stays allocated.
  virtual absl::Status Start(bool keep_contents) = 0;
  absl::Status Start() { return Start(false); }
  // The layout Start will create, known before it runs: the lease store
  // refuses to re-attach leases to a different one.
  virtual std::string Layout() const = 0;
  // Whether the backing outlives the daemon (files), so that leases can
  // survive a restart. memfd backing does not.
  virtual bool persistent() const = 0;
  virtual const std::vector<BackedSegment>& segments() const = 0;

  // Adds a segment of `bytes` (a multiple of the page size) at an IOVA the
  // source chooses. REQUIRES: Start() succeeded.
  virtual absl::StatusOr<BackedSegment> AddSegment(uint64_t bytes,
                                                   uint32_t freelist,
                                                   int32_t numa) = 0;
  // Re-creates a segment that AddSegment made before a restart (the lease
  // store recorded it) at the same IOVA and backing; with keep_contents the
  // backing is re-attached as it is. REQUIRES: Start() succeeded.
  virtual absl::StatusOr<BackedSegment> RestoreSegment(const BackedSegment& seg,
                                                       bool keep_contents) = 0;
  // Removes the segment starting at `iova`; its memory must be unused.
  virtual absl::Status RemoveSegment(uint64_t iova) = 0;

  // The IOVA ranges the IOMMU translates (empty for sim).
  virtual std::vector<IovaRange> iova_ranges() const { return {}; }
  // The PCI devices the source drives, with their DMA limits.
  virtual std::vector<VfioDevice> devices() const { return {}; }

  // A new descriptor (the caller closes it) of the backing of the segment
  // containing `iova`: for tenants to map memory they cannot open by path.
  // NOT_FOUND if no segment holds it.
  virtual absl::StatusOr<int> BackingFd(uint64_t iova) = 0;
  // A new descriptor of the VFIO device `bdf` (the caller closes it).
  // NOT_FOUND for a device the source does not drive.
  virtual absl::StatusOr<int> DeviceFd(const std::string& bdf) {
    return absl::NotFoundError(
        absl::StrCat("the ", name(), " source drives no device ", bdf));
  }

  // Per-lease CPU views (docs/vfio.md, "Per-lease mappings"): one
  // descriptor that maps exactly a lease's runs, back to back in the
  // lease's order, and nothing else.
  //
  // OK if CreateView works here; otherwise why not (isolation is then off:
  // the daemon refuses to start or, with isolation: off, hands out
  // segment fds).
  virtual absl::Status ViewSupport() const {
    return absl::UnimplementedError(
        absl::StrCat("the ", name(), " source has no per-lease views"));
  }
  // A new view named `name` (a lease id: letters, digits, '-', '_') of the
  // ranges [iova, iova + bytes), each inside one segment. The caller owns
  // the descriptor. A persistent source (sim) keeps it until DestroyView,
  // across restarts; otherwise it lives as long as a descriptor or a
  // mapping of it.
  struct ViewRange {
    uint64_t iova = 0;
    uint64_t bytes = 0;
  };
  virtual absl::StatusOr<int> CreateView(
      const std::string& /*name*/, const std::vector<ViewRange>& /*runs*/) {
    return ViewSupport();
  }
  // A persistent view made before a restart; NOT_FOUND if there is none.
  virtual absl::StatusOr<int> OpenView(const std::string& name) {
    return absl::NotFoundError(absl::StrCat("no view ", name));
  }
  // Forgets a persistent view (the file goes; mappings of it stay valid).
  virtual void DestroyView(const std::string& /*name*/) {}
  // How many references to view `name`'s file the source itself keeps
  // (physpool-keeper's copy, its own descriptor of a restored view), for a
  // view whose references the kernel counts (a dma-buf): the quarantine
  // takes the view as free once the count is down to these and the
  // daemon's own descriptor.
  virtual int64_t ViewOwnReferences(const std::string& /*name*/) const {
    return 0;
  }
  // The names of the persistent views there are (at start: those a
  // previous daemon made).
  virtual std::vector<std::string> ViewNames() { return {}; }

  // Device domains (docs/vfio.md, "Device domains"): the devices of a
  // tenant reach that tenant's leases and nothing else. All thread-safe.
  //
  // Whether `tenant` has devices of its own (its leases are mapped).
  virtual bool HasDevices(const std::string& /*tenant*/) const { return false; }
  // Makes a lease's runs reachable by the devices of `tenant`: maps each
  // run (split at segment boundaries) into the domain of each of them, at
  // its IOVA. All or nothing: on error nothing of it stays mapped.
  // RESOURCE_EXHAUSTED, before any map, if a domain lacks the DMA entries
  // or the memlock for it. OK for a tenant without devices.
  virtual absl::Status MapLease(const std::string& /*tenant*/,
                                const std::vector<ViewRange>& /*runs*/) {
    return absl::OkStatus();
  }
  // Undoes MapLease (runs that are not mapped are skipped). OK means no
  // device of `tenant` reaches any byte of the runs any more.
  virtual absl::Status UnmapLease(const std::string& /*tenant*/,
                                  const std::vector<ViewRange>& /*runs*/) {
    return absl::OkStatus();
  }
  // At start, once the leases are restored: makes every tenant domain map
  // exactly the runs of its tenant's `live` leases, unmapping what a
  // previous daemon left mapped (leases that ended) and mapping what is
  // missing. An unmap that fails fails the start (those pages would be
  // reused while a device reaches them); a map that fails is counted.
  struct LiveLease {
    std::string tenant;
    std::vector<ViewRange> runs;
  };
  struct Reconciled {
    uint64_t kept = 0, unmapped = 0, mapped = 0, map_errors = 0;
  };
  virtual absl::StatusOr<Reconciled> Reconcile(
      const std::vector<LiveLease>& /*live*/) {
    return Reconciled{};
  }
  // Per device, its tenant and domain (empty for sources without devices).
  virtual std::vector<DeviceDomain> DeviceDomains() const { return {}; }

  // Zeroes [iova, iova + bytes), which lies inside one segment.
  // Thread-safe for disjoint ranges.
  virtual absl::Status Zero(uint64_t iova, uint64_t bytes) = 0;
};

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_MEMORY_SOURCE_H_
