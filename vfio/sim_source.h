// SPDX-License-Identifier: Apache-2.0
// The embedded default memory source: segments backed by files in a
// directory (tmpfs: /dev/shm or a runtime dir) at synthetic IOVAs. Runs
// anywhere, without root or an IOMMU.
#ifndef PHYSPOOL_VFIO_SIM_SOURCE_H_
#define PHYSPOOL_VFIO_SIM_SOURCE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "vfio/memory_source.h"

namespace physpool::vfio {

struct SimSegmentConfig {
  uint64_t bytes = 0;
  uint32_t freelist = 0;
  int32_t numa = 0;
};

struct SimConfig {
  std::string dir;  // created if missing
  uint64_t page_size = 4096;
  uint64_t base_iova = uint64_t{1} << 32;
  std::vector<SimSegmentConfig> segments;
};

// The embedded default layout: 1 GiB in four segments of different sizes,
// two freelists and two NUMA nodes.
SimConfig DefaultSimConfig(const std::string& dir);

class SimSource final : public MemorySource {
 public:
  explicit SimSource(SimConfig config) : config_(std::move(config)) {}
  ~SimSource() override;

  std::string name() const override { return "sim"; }
  uint64_t page_size() const override { return config_.page_size; }
  using MemorySource::Start;
  absl::Status Start(bool keep_contents) override;
  // "page_size;iova:bytes:path;...".
  std::string Layout() const override;
  bool persistent() const override { return true; }
  absl::StatusOr<int> BackingFd(uint64_t iova) override;
  const std::vector<BackedSegment>& segments() const override {
    return segments_;
  }
  absl::StatusOr<BackedSegment> AddSegment(uint64_t bytes, uint32_t freelist,
                                           int32_t numa) override;
  absl::StatusOr<BackedSegment> RestoreSegment(const BackedSegment& seg,
                                               bool keep_contents) override;
  absl::Status RemoveSegment(uint64_t iova) override;
  absl::Status Zero(uint64_t iova, uint64_t bytes) override;

  // Views are files of their own in the directory ("lease-<name>.view",
  // 0600): sim memory is not pinned, so a lease's CPU memory can simply
  // be an object of its own. It starts zeroed and no other lease's bytes
  // are in it; the segment files are the daemon's alone.
  absl::Status ViewSupport() const override { return absl::OkStatus(); }
  absl::StatusOr<int> CreateView(const std::string& name,
                                 const std::vector<ViewRange>& runs) override;
  absl::StatusOr<int> OpenView(const std::string& name) override;
  void DestroyView(const std::string& name) override;
  std::vector<std::string> ViewNames() override;

 private:
  absl::StatusOr<std::string> ViewPath(const std::string& name) const;
  absl::StatusOr<BackedSegment> Create(uint64_t iova, const SimSegmentConfig& s,
                                       const std::string& path,
                                       bool keep_contents);
  void Append(const BackedSegment& seg);
  std::string PathOf(int n) const;

  const SimConfig config_;
  std::vector<BackedSegment> segments_;  // changed only by the server's
                                         // serialised segment calls
  absl::Mutex mu_;
  std::map<uint64_t, Backing> maps_ ABSL_GUARDED_BY(mu_);  // by IOVA
  uint64_t next_iova_ = 0;
};

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_SIM_SOURCE_H_
