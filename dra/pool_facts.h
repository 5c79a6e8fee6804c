// SPDX-License-Identifier: Apache-2.0
// What the node's pool offers the scheduler, from physpoold's
// GetPoolInfo: one device per NUMA node ("numa<N>") when every segment
// has a node, else one device "pool"; per device the bytes the
// scheduler may hand out (the segments' bytes less what other tenants
// hold or what is being zeroed; draining segments count for nothing),
// and whether every segment of the device is draining.
//
// State: none (PoolFacts is a value). Thread safety: pure function.
// I/O: none.
#ifndef PHYSPOOL_DRA_POOL_FACTS_H_
#define PHYSPOOL_DRA_POOL_FACTS_H_

#include <cstdint>
#include <map>
#include <string>

#include "physpool/v1/physpool.pb.h"

namespace physpool::dra {

struct PoolFacts {
  struct Dev {
    int numa = -1;  // the NUMA node, or -1 (device "pool")
    uint64_t capacity = 0, free = 0, largest = 0;
    // Every segment of the device is draining (capacity is then 0).
    bool draining = false;
  };
  uint64_t page_size = 0;
  std::map<std::string, Dev> devices;  // by device name
  uint64_t dma_limit = 0;              // the lowest of the devices', 0: none
};

// `ours`: the bytes this driver's claims hold, by device name (the rest of
// the used bytes are other tenants').
PoolFacts PoolFactsFrom(const v1::GetPoolInfoResponse& info,
                        const std::map<std::string, uint64_t>& ours);

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_POOL_FACTS_H_
