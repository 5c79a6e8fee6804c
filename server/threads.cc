// SPDX-License-Identifier: Apache-2.0
// PoolManager's threads (pool_manager.h). Each holds the pool's lock while
// it looks, and works in turns: maintenance (expiries, warnings, wait
// deadlines, reclaims past their grace period, store probes), zeroing
// (Recycler: take a job, zero it with no lock, apply), and the quarantine
// (ready gates; take a scan, gather with no lock, apply).
#include <algorithm>
#include <optional>
#include <utility>

#include "absl/time/clock.h"
#include "server/lease/parts.h"
#include "server/pool_manager.h"

namespace physpool::server {

void PoolManager::MaintenanceLoop() {
  absl::MutexLock l(&mu_);
  Parts& p = *parts_;
  while (!threads_stop_) {
    Turn t = NewTurn();
    const absl::Time now = clock_->Now();
    if (!stopping_) {
      p.ender.Expire(t);
      p.waiting.Expire(t);
    }
    p.reclaim.Ready(t);
    // The store: once a probe write succeeds, retry what failed.
    p.durable.ProbeIfDue(t);
    absl::Time next = now + absl::Seconds(1);
    if (auto x = p.lessor.NextDeadline()) next = std::min(next, *x);
    if (auto x = p.waiters.NextDeadline()) next = std::min(next, *x);
    if (auto x = p.reclaims.NextReady()) next = std::min(next, *x);
    if (!t.idle()) {
      EndTurn(t);
      continue;
    }
    absl::Duration wait = std::max(absl::ZeroDuration(), next - now);
    if (!p.durable.writable()) wait = std::min(wait, p.durable.retry());
    // Waiting on the system clock: an injected clock must not be far ahead.
    maintenance_wake_ = now + wait;
    wake_maintenance_.WaitWithTimeout(&mu_, wait);
    maintenance_wake_ = absl::InfinitePast();  // awake: looks at everything
  }
}

void PoolManager::ScrubLoop() {
  absl::MutexLock l(&mu_);
  Parts& p = *parts_;
  for (;;) {
    Turn t = NewTurn();
    while (!threads_stop_ && !p.recycler.HasWork(t)) {
      if (const std::optional<absl::Time> retry = p.recycler.NextRetry(t)) {
        wake_scrubber_.WaitWithDeadline(&mu_, *retry);
        break;
      }
      wake_scrubber_.Wait(&mu_);
    }
    if (threads_stop_) return;
    std::optional<ScrubJob> job = p.recycler.Take(t);
    if (!job) continue;
    mu_.Unlock();
    {
      // The end of the zeroing is committed on this thread, not handed on.
      Committer::Scope drive(&p.committer);
      const absl::Status zeroed = p.recycler.Work(*job);
      mu_.Lock();
      Turn done = NewTurn();
      p.recycler.Apply(done, *std::move(job), zeroed);
      EndTurn(done);
      mu_.Unlock();
    }
    mu_.Lock();
  }
}

void PoolManager::QuarantineLoop() {
  absl::MutexLock l(&mu_);
  Parts& p = *parts_;
  while (!threads_stop_) {
    Turn t = NewTurn();
    p.quarantine.RunReadyGates(t);
    if (!t.idle()) {
      EndTurn(t);
      continue;
    }
    if (!p.quarantine.ScanDue(t)) {
      wake_quarantine_.WaitWithDeadline(&mu_, p.quarantine.NextWake(t));
      continue;
    }
    const LeaseViews::ScanSet set = p.quarantine.TakeScan(t);
    mu_.Unlock();
    const absl::Time t0 = absl::Now();
    const LeaseViews::Evidence found = p.quarantine.Gather(set);
    const absl::Duration took = absl::Now() - t0;
    mu_.Lock();
    Turn applied = NewTurn();
    p.quarantine.Apply(applied, set, found, took);
    if (!applied.idle()) EndTurn(applied);
  }
}

}  // namespace physpool::server
