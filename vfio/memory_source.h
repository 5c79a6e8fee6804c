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
#include "pglist/physseg.h"

namespace physpool::vfio {

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

  // Creates or re-attaches the backing and makes it DMA-visible. On error
  // nothing stays allocated.
  virtual absl::Status Start() = 0;
  virtual const std::vector<BackedSegment>& segments() const = 0;

  // Adds a segment of `bytes` (a multiple of the page size) at an IOVA the
  // source chooses. REQUIRES: Start() succeeded.
  virtual absl::StatusOr<BackedSegment> AddSegment(uint64_t bytes,
                                                   uint32_t freelist,
                                                   int32_t numa) = 0;
  // Removes the segment starting at `iova`; its memory must be unused.
  virtual absl::Status RemoveSegment(uint64_t iova) = 0;

  // Zeroes [iova, iova + bytes), which lies inside one segment.
  // Thread-safe for disjoint ranges.
  virtual absl::Status Zero(uint64_t iova, uint64_t bytes) = 0;
};

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_MEMORY_SOURCE_H_
