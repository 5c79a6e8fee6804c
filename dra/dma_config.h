// SPDX-License-Identifier: Apache-2.0
// The opaque configuration of this driver's requests (apiVersion
// dma.physpool.io/v1, kind DmaConfig; docs/kubernetes.md): its fields,
// checked strictly, and which of an allocation's configs apply to a
// request (the class's first, then the claim's: the later one wins).
//
// State: none. Thread safety: pure functions. I/O: none.
#ifndef PHYSPOOL_DRA_DMA_CONFIG_H_
#define PHYSPOOL_DRA_DMA_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace physpool::dra {

struct DmaConfig {
  uint64_t alignment = 0, boundary = 0;
  uint32_t max_segments = 0;
  std::optional<bool> numa_strict;
};

// Applies one opaque config's `parameters` to `c`. INVALID_ARGUMENT for a
// wrong apiVersion/kind, an unknown field or a bad value.
absl::Status ApplyConfig(const nlohmann::json& params, DmaConfig* c);

// The config of `request` (a result's request, "<request>/<subrequest>"
// for a prioritized list) from an allocation's `config` list: every
// opaque config of `driver` that names the request or its parent, or no
// request, class configs before claim configs.
absl::StatusOr<DmaConfig> ConfigFor(const nlohmann::json& allocation,
                                    const std::string& request,
                                    const std::string& driver);

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_DMA_CONFIG_H_
