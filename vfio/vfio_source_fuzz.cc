// SPDX-License-Identifier: Apache-2.0
// Fuzzes the vfio source over the fake kernel: a layout (IOVA ranges,
// device limits, pool shares) and a sequence of hot adds and removes, with
// a fault injected at a chosen kernel call. After every step the fake's
// mappings are exactly the source's segments, each inside one IOVA range
// and its freelist's area, none overlapping; a failed Start leaves no
// mapping and no descriptor.
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <map>

#include "vfio/fake_kernel.h"
#include "vfio/vfio_source.h"

namespace physpool::vfio {
namespace {

constexpr uint64_t kPage = 4096;

class Bytes {
 public:
  Bytes(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  uint64_t Next(uint64_t bound) {  // in [0, bound)
    uint64_t v = 0;
    for (int i = 0; i < 2 && n_ > 0; ++i, ++d_, --n_) v = v << 8 | *d_;
    return bound ? v % bound : 0;
  }
  bool empty() const { return n_ == 0; }

 private:
  const uint8_t* d_;
  size_t n_;
};

void Require(bool ok) {
  if (!ok) std::abort();
}

void CheckInvariants(const VfioSource& source, const FakeKernel& kernel,
                     const VfioConfig& config) {
  Require(source.segments().size() == kernel.mappings().size());
  for (const BackedSegment& seg : source.segments()) {
    const auto all = kernel.mappings();
    auto m = all.find(seg.spec.iova);
    Require(m != all.end());
    const uint64_t bytes = seg.spec.pages.value * kPage;
    Require(m->second.bytes == bytes);
    bool inside = false;
    for (const IovaRange& r : kernel.ranges) {
      inside |= seg.spec.iova >= r.first && seg.spec.iova + bytes - 1 <= r.last;
    }
    Require(inside && seg.spec.iova > 0);
    auto area = AreaOf(config.layout, seg.spec.freelist);
    Require(area.ok() && seg.spec.iova >= area->lo &&
            seg.spec.iova + bytes <= area->hi);
  }
  uint64_t end = 0;
  for (const auto& [iova, m] : kernel.mappings()) {
    Require(iova >= end);
    end = iova + m.bytes;
  }
}

}  // namespace
}  // namespace physpool::vfio

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace physpool::vfio;
  Bytes in(data, size);
  FakeKernel kernel;
  kernel.device_groups = {{"0000:00:01.0", 1}};
  kernel.ranges.clear();
  uint64_t at = in.Next(4) * kPage;
  for (uint64_t i = 0, n = 1 + in.Next(3); i < n; ++i) {
    const uint64_t len = (1 + in.Next(64)) * kPage;
    kernel.ranges.push_back({at, at + len - 1});
    at += len + in.Next(4) * kPage;
  }
  kernel.dma_limit = 1 + in.Next(16);
  VfioConfig config;
  config.backing = BackingKind::kMemfd;
  config.group_busy_timeout = absl::ZeroDuration();
  config.devices = {
      {"0000:00:01.0", in.Next(2) ? (1 + in.Next(64)) * kPage : 0}};
  if (config.devices[0].dma_limit) {
    config.layout.dma_limits = {config.devices[0].dma_limit};
  }
  config.layout.page_size = kPage;
  config.layout.max_segment_bytes = (1 + in.Next(8)) * kPage;
  for (int i = 0, n = 1 + in.Next(2); i < n; ++i) {
    PoolShare share{i, (1 + in.Next(16)) * kPage, std::nullopt};
    if (!config.layout.dma_limits.empty() && in.Next(2)) {
      share.low_bytes = in.Next(share.bytes / kPage + 1) * kPage;
    }
    config.layout.pool.push_back(share);
  }
  FaultyKernel faulty(&kernel);
  const int errs[] = {EINVAL, ENOMEM, EEXIST, EBUSY, EFAULT};
  faulty.FailCall(static_cast<int>(in.Next(40)), errs[in.Next(5)]);
  {
    VfioSource source(config, &faulty);
    if (!source.Start().ok()) {
      Require(kernel.mappings().empty() && kernel.open_fds() == 0);
      return 0;
    }
    CheckInvariants(source, kernel, config);
    while (!in.empty()) {
      faulty.FailCall(faulty.calls() + 1 + static_cast<int>(in.Next(6)),
                      errs[in.Next(5)]);
      if (in.Next(2) && !source.segments().empty()) {
        const auto& segs = source.segments();
        (void)source.RemoveSegment(segs[in.Next(segs.size())].spec.iova);
      } else {
        (void)source.AddSegment((1 + in.Next(8)) * kPage,
                                static_cast<uint32_t>(in.Next(3)),
                                static_cast<int32_t>(in.Next(2)));
      }
      CheckInvariants(source, kernel, config);
    }
  }
  // The destructor unmaps and closes everything.
  Require(kernel.mappings().empty() && kernel.open_fds() == 0);
  return 0;
}
