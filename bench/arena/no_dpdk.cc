// SPDX-License-Identifier: Apache-2.0
// bench/arena/dpdk.h without DPDK (arena_benchmark).
#include <cstdio>

#include "bench/arena/dpdk.h"

namespace physpool::bench {

int InitDpdk(int, char**) { return 1; }

std::optional<RunSummary> RunDpdk(const Plan&) {
  std::printf(
      "DPDK: not built in (install libdpdk-dev: make bench-arena does)\n");
  return std::nullopt;
}

void EndDpdk() {}

}  // namespace physpool::bench
