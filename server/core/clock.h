// SPDX-License-Identifier: Apache-2.0
// The time source of leases and waits, injected so tests can control it.
//
// State: none. Thread safety: Now() is called from any thread (turns, the
// maintenance thread), so an implementation must be thread-safe
// (SystemClock reads absl::Now). I/O: none. REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_CLOCK_H_
#define PHYSPOOL_SERVER_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace physpool::server {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_CLOCK_H_
