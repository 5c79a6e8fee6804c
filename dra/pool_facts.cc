// SPDX-License-Identifier: Apache-2.0
#include "dra/pool_facts.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace physpool::dra {

PoolFacts PoolFactsFrom(const v1::GetPoolInfoResponse& info,
                        const std::map<std::string, uint64_t>& ours) {
  PoolFacts f;
  f.page_size = info.page_size();
  for (const v1::Device& d : info.devices()) {
    if (d.dma_limit() != 0 && (f.dma_limit == 0 || d.dma_limit() < f.dma_limit))
      f.dma_limit = d.dma_limit();
  }
  bool all_numa = info.segments_size() > 0;
  for (const v1::SegmentInfo& s : info.segments())
    all_numa &= s.numa_node() >= 0;
  std::map<std::string, uint64_t> used;
  std::map<std::string, bool> serving;  // some segment is not draining
  for (const v1::SegmentInfo& s : info.segments()) {
    const std::string name =
        all_numa ? absl::StrCat("numa", s.numa_node()) : "pool";
    PoolFacts::Dev& d = f.devices[name];
    d.numa = all_numa ? s.numa_node() : -1;
    serving[name] |= !s.draining();
    if (s.draining()) continue;  // no new allocations there
    d.capacity += s.bytes();
    d.free += s.free_bytes();
    d.largest = std::max(d.largest, s.largest_free_run_bytes());
    // Memory being zeroed is not free yet either.
    used[name] += s.used_bytes() + s.scrubbing_bytes();
  }
  for (auto& [name, d] : f.devices) {
    const auto it = ours.find(name);
    const uint64_t mine = it == ours.end() ? 0 : it->second;
    const uint64_t others = used[name] > mine ? used[name] - mine : 0;
    d.capacity = d.capacity > others ? d.capacity - others : 0;
    if (f.page_size != 0) d.capacity -= d.capacity % f.page_size;
    d.draining = !serving[name];
  }
  return f;
}

}  // namespace physpool::dra
