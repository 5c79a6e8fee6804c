// SPDX-License-Identifier: Apache-2.0
// The DRA driver's settings (physpool-dra's flags; docs/kubernetes.md).
// State: a plain value. Thread safety: immutable once the driver has it.
// I/O: none.
#ifndef PHYSPOOL_DRA_DRIVER_OPTIONS_H_
#define PHYSPOOL_DRA_DRIVER_OPTIONS_H_

#include <cstdint>
#include <string>

namespace physpool::dra {

struct DriverOptions {
  std::string driver_name = "dma.physpool.io";
  std::string node_name;
  std::string physpool_token;  // the driver's tenant token ("" = none)
  std::string socket_dir = "/run/physpool";  // physpoold's, on the host
  std::string socket_name = "physpool.sock";
  std::string plugin_dir;  // state.json, claims/<uid>/token
  std::string cdi_dir = "/var/run/cdi";
  uint32_t lease_ttl_seconds = 300;
  // Where a container finds its claim's token (the claim dir's mount).
  std::string container_claim_dir = "/var/run/physpool-claim";
};

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_DRIVER_OPTIONS_H_
