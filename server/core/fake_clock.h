// SPDX-License-Identifier: Apache-2.0
// A Clock for tests: it stands still until Advance moves it on.
//
// State: the time it shows. Thread safety: thread-safe (its own mutex).
// I/O: none. REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_FAKE_CLOCK_H_
#define PHYSPOOL_SERVER_FAKE_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/clock.h"

namespace physpool::server {

class FakeClock final : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock l(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock l(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_FAKE_CLOCK_H_
