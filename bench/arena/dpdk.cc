// SPDX-License-Identifier: Apache-2.0
// bench/arena/dpdk.h with DPDK built in (arena_benchmark_dpdk).
#include "bench/arena/dpdk.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <sched.h>

#include <cinttypes>
#include <cstdio>
#include <memory>

#include "bench/dpdk_heap.h"

namespace physpool::bench {

int InitDpdk(int argc, char** argv) {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const bool saved = sched_getaffinity(0, sizeof(cpus), &cpus) == 0;
  const int eal = rte_eal_init(argc, argv);
  if (eal < 0) {
    std::fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
    return -1;
  }
  // -l 0 pinned this thread to core 0.
  if (saved) sched_setaffinity(0, sizeof(cpus), &cpus);
  return eal + 1;
}

std::optional<RunSummary> RunDpdk(const Plan& plan) {
  std::fprintf(stderr, "rte_malloc...\n");
  const std::pair<uint64_t, uint64_t> range = DpdkRange();
  (void)WarmUpHeap();
  const rte_malloc_socket_stats st = HeapStats();
  std::printf("DPDK: heap %zu bytes (%zu free, largest free %zu) in [%#" PRIx64
              ", %#" PRIx64 ")\n",
              st.heap_totalsz_bytes, st.heap_freesz_bytes,
              st.greatest_free_size, range.first, range.second);
  return RunThreads(
      "rte_malloc", 1, plan,
      [&](int) {
        return std::make_unique<MallocTarget>(range.first, range.second);
      },
      [] {
        const rte_malloc_socket_stats s = HeapStats();
        return static_cast<double>(s.heap_allocsz_bytes) / s.heap_totalsz_bytes;
      });
}

void EndDpdk() { rte_eal_cleanup(); }

}  // namespace physpool::bench
