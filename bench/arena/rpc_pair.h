// SPDX-License-Identifier: Apache-2.0
// The arena benchmark's reference: physpoold's Allocate + Release RPC pair,
// with raw gRPC stubs over the daemon's unix socket (tenant alice), as
// bench/rpc_benchmark; one pair after the other, on the first requests of
// thread 0's step stream (bench/churn.h; max_segments 1), after 100
// untimed pairs of 64 KiB. Each RPC is timed alone, and the pair.
#ifndef PHYSPOOL_BENCH_ARENA_RPC_PAIR_H_
#define PHYSPOOL_BENCH_ARENA_RPC_PAIR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "tests/server/daemon.h"

namespace physpool::bench {

struct RpcFigures {
  std::vector<double> allocate_ns, release_ns, pair_ns;
  uint64_t failed = 0;  // pairs of which an RPC failed
  std::string first_error;
};

// `n` pairs on the first n requests of the step stream of `seed`, each
// capped to `cap` bytes.
RpcFigures RunRpcPairs(const testing::Daemon& d, uint64_t seed, uint64_t n,
                       uint64_t cap);

}  // namespace physpool::bench

#endif  // PHYSPOOL_BENCH_ARENA_RPC_PAIR_H_
