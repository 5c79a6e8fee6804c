// SPDX-License-Identifier: Apache-2.0
// Turns for components' unit tests: a turn whose wake-ups are counted and
// whose queued work runs when the test says. Never used by the daemon.
//
// State: the wake-up and freed counts, `accepting`. Thread safety: not
// thread-safe (one test thread; one turn at a time is the test's to keep).
// I/O: none. REQUIRES: `clock` outlives it and its turns.
#ifndef PHYSPOOL_SERVER_CORE_TURN_TESTING_H_
#define PHYSPOOL_SERVER_CORE_TURN_TESTING_H_

#include <memory>

#include "absl/functional/function_ref.h"
#include "server/core/turn.h"

namespace physpool::server {

class TurnTesting final : public TurnHost, public Coordinator {
 public:
  explicit TurnTesting(const Clock* clock) : clock_(clock) {}

  // A turn (the "lock" is this object: one turn at a time).
  std::unique_ptr<Turn> Begin() {
    return std::unique_ptr<Turn>(new Turn(clock_, this));
  }
  // Runs what `t` queued; whether it freed memory.
  bool End(Turn& t) {
    const bool freed = t.TakeFreed();
    for (auto& f : t.TakeLater()) f();
    return freed;
  }
  void Locked(absl::FunctionRef<void(Turn&)> fn) override {
    std::unique_ptr<Turn> t = Begin();
    fn(*t);
    freed_ += End(*t) ? 1 : 0;
  }

  void WakeMaintenanceBy(absl::Time) override { ++maintenance_wakes; }
  void WakeMaintenance() override { ++maintenance_wakes; }
  void WakeScrubber() override { ++scrubber_wakes; }
  void ScanSoon() override { ++scans; }
  bool Accepting() const override { return accepting; }

  bool accepting = true;
  int maintenance_wakes = 0, scrubber_wakes = 0, scans = 0;
  int freed() const { return freed_; }

 private:
  const Clock* const clock_;
  int freed_ = 0;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_CORE_TURN_TESTING_H_
