// SPDX-License-Identifier: Apache-2.0
// DPDK's heap for the benchmarks that set allocators beside it
// (bench/dpdk_compare; bench/arena/ in arena_benchmark_dpdk): rte_malloc as
// a churn target, the IOVA range of DPDK's memory, the heap's statistics,
// and one warm-up of the whole heap. Needs an initialised EAL; single
// thread.
#ifndef PHYSPOOL_BENCH_DPDK_HEAP_H_
#define PHYSPOOL_BENCH_DPDK_HEAP_H_

#include <rte_malloc.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "bench/churn.h"

namespace physpool::bench {

// rte_malloc_socket / rte_free (any socket). A boundary cannot be asked of
// it, so a request with one is aligned to its size's power of two instead
// (which implies the boundary, and is harder). Answers are IOVAs; handles
// are the CPU addresses.
class MallocTarget : public MappedTarget {
 public:
  MallocTarget(uint64_t lo, uint64_t hi) : MappedTarget(lo, hi) {}
  std::string Name() const override { return "rte_malloc"; }
  std::optional<uint64_t> Allocate(const ChurnRequest& r,
                                   uint64_t* handle) override;
  void Free(uint64_t handle) override;
  uint8_t* Cpu(uint64_t handle) const override {
    return reinterpret_cast<uint8_t*>(handle);
  }
};

// The IOVA range of DPDK's memory, [first, second): the union of its
// memseg lists.
std::pair<uint64_t, uint64_t> DpdkRange();

// The heap's statistics on this thread's socket.
rte_malloc_socket_stats HeapStats();

// Writes the whole heap once (one allocation of its largest free block,
// filled and freed), so that no run pays for first-touch page faults.
// Tells whether rte_free left the freed bytes zero (checked, not assumed).
bool WarmUpHeap();

}  // namespace physpool::bench

#endif  // PHYSPOOL_BENCH_DPDK_HEAP_H_
