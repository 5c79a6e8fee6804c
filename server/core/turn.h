// SPDX-License-Identifier: Apache-2.0
// A Turn: proof that the pool's one lock is held, and the list of what is
// to happen once it is dropped. The daemon's state (pool, leases, views,
// waiting requests, ...) is changed only inside a turn: every component
// method that touches it takes a `Turn&`, and only the coordinator
// (PoolManager) makes turns, with its lock held (its constructor is
// private). A continuation that runs later — a store write's completion, a
// quarantine gate — asks the Coordinator for a new turn.
//
// What a turn collects instead of doing it under the lock:
// - answers to callers (Later), run after the lock is dropped, in order;
// - "memory came back" (MemoryFreed): the waiting requests are retried
//   once, at the end of the turn, still under the lock — the one place
//   that acts on freed memory;
// - wake-ups of the daemon's threads (maintenance, zeroing, the
//   quarantine's scan), which need the lock's condition variables.
//
// State: a turn's queued work (Later) and its memory-freed flag; TurnHost
// and Coordinator are interfaces.
// Thread safety: not thread-safe: a turn belongs to the thread that holds
// the lock. Coordinator::Locked may be called from any thread.
// I/O: none (wake-ups signal the host's condition variables).
// REQUIRES: a turn is used only while its lock is held (a continuation
// takes a new one); Locked is called with the lock not held — never from
// inside a turn (an event sink, a gate's step).
#ifndef PHYSPOOL_SERVER_CORE_TURN_H_
#define PHYSPOOL_SERVER_CORE_TURN_H_

#include <functional>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "server/core/clock.h"

namespace physpool::server {

class Turn;

// What a turn's wake-ups reach: the coordinator's threads.
class TurnHost {
 public:
  virtual ~TurnHost() = default;
  // Wakes the maintenance thread if it sleeps past `t` (clock time).
  virtual void WakeMaintenanceBy(absl::Time t) = 0;
  virtual void WakeMaintenance() = 0;
  virtual void WakeScrubber() = 0;
  // The quarantine's next scan now (a view was let go or ended).
  virtual void ScanSoon() = 0;
  // Whether new work is taken (not shutting down).
  virtual bool Accepting() const = 0;
};

// Runs `fn` in a turn of its own: takes the lock, runs `fn`, retries the
// waiting requests if memory came back, drops the lock, runs what the turn
// queued. REQUIRES: the lock is not held.
class Coordinator {
 public:
  virtual ~Coordinator() = default;
  virtual void Locked(absl::FunctionRef<void(Turn&)> fn) = 0;
};

class Turn {
 public:
  Turn(const Turn&) = delete;
  Turn& operator=(const Turn&) = delete;

  // The injected clock's time.
  absl::Time now() const { return clock_->Now(); }
  // Runs `f` once the lock is dropped, after what was queued before.
  void Later(std::function<void()> f) { later_.push_back(std::move(f)); }
  // Memory came back to the pool (or the pool's capacity changed): the
  // waiting requests are retried before the turn ends.
  void MemoryFreed() { freed_ = true; }

  void WakeMaintenanceBy(absl::Time t) { host_->WakeMaintenanceBy(t); }
  void WakeMaintenance() { host_->WakeMaintenance(); }
  void WakeScrubber() { host_->WakeScrubber(); }
  void ScanSoon() { host_->ScanSoon(); }
  // False once the daemon is shutting down: new work is refused.
  bool accepting() const { return host_->Accepting(); }

 private:
  friend class PoolManager;  // the only maker of turns
  friend class TurnTesting;  // and components' unit tests (turn_testing.h)
  Turn(const Clock* clock, TurnHost* host) : clock_(clock), host_(host) {}
  // Whether memory was freed since the last call; clears the flag.
  bool TakeFreed() { return std::exchange(freed_, false); }
  // Nothing to do after the turn.
  bool idle() const { return later_.empty() && !freed_; }
  std::vector<std::function<void()>> TakeLater() {
    return std::exchange(later_, {});
  }

  const Clock* const clock_;
  TurnHost* const host_;
  bool freed_ = false;
  std::vector<std::function<void()>> later_;
};

// A step that runs in a turn and may queue more (quarantine gates, zeroing
// continuations).
using TurnStep = std::function<void(Turn&)>;

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_CORE_TURN_H_
