// Behaviour knobs of the lease manager, from the config file.
#ifndef PHYSPOOL_SERVER_OPTIONS_H_
#define PHYSPOOL_SERVER_OPTIONS_H_

#include "absl/time/time.h"
#include "pglist/pool.h"

namespace physpool::server {

struct ManagerOptions {
  pglist::Strategy strategy = pglist::Strategy::kAddress;
  uint64_t reserve_bytes = 0;
  absl::Duration default_ttl = absl::Seconds(30);
  absl::Duration max_ttl = absl::Hours(1);
  // EXPIRING is sent this long before a lease expires.
  absl::Duration expiring_warning = absl::Seconds(5);
  // A preempted tenant's device may still write for this long; the memory is
  // zeroed and handed over after it.
  absl::Duration reclaim_grace = absl::Milliseconds(200);
  // A waiting request older than this holds back younger requests (see
  // docs/api.md, "Waiting").
  absl::Duration starvation = absl::Seconds(1);
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_OPTIONS_H_
