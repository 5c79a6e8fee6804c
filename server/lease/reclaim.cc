// SPDX-License-Identifier: Apache-2.0
#include "server/lease/reclaim.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/core/log.h"
#include "server/store/unavailable.h"
#include "util/status_macros.h"

namespace physpool::server {

void Reclaim::Start(Turn& t, const Tenant& tenant, const AllocateParams& p,
                    const std::string& fp, const pglist::ReclaimPlan& plan,
                    uint64_t handle, absl::Time deadline, absl::Time since,
                    AllocDone done) {
  const uint64_t page_size = d_.pool->page_size();
  PendingReclaim r;
  r.handle = handle;
  r.caller = handle;
  r.tenant = tenant;
  r.params = p;
  r.fingerprint = fp;
  r.plan = plan;
  r.bytes = plan.window.pages.value * page_size;
  r.victims = plan.victims;
  r.ready = t.now() + d_.options->reclaim_grace;
  r.deadline = deadline;
  r.since = since;
  r.done = std::move(done);
  std::vector<pglist::PageRun> free_runs = d_.pool->FreeRunsIn(plan.window);
  if (!free_runs.empty()) {
    auto hold = d_.pool->Claim(free_runs, false);
    if (hold.ok()) r.hold = hold->id;
  }
  std::vector<std::string> victim_leases;
  for (pglist::AllocationId v : plan.victims) {
    (void)d_.pool->SetPreemptible(v, false);  // no second reclaim may take it
    if (const std::string* id = d_.lessor->LeaseOf(v))
      victim_leases.push_back(*id);
  }
  r.unrecorded_ends = static_cast<int>(victim_leases.size());
  const absl::Time ready = r.ready;
  d_.reclaims->Add(std::move(r));
  for (const std::string& id : victim_leases) {
    Lessor::Lease gone = d_.ender->EndNow(
        t, id, LeaseEventInfo::Kind::kPreempted,
        absl::StrCat("reclaimed for tenant \"", tenant.name, "\""), ready);
    const pglist::AllocationId alloc = gone.alloc;
    d_.ender->RecordEnd(t, gone, [this, handle, alloc](Turn& t, int64_t row) {
      PendingReclaim* pr = d_.reclaims->ByHandle(handle);
      if (pr != nullptr) {
        pr->victim_rows.push_back(row);
        --pr->unrecorded_ends;
        t.WakeMaintenance();
      } else {
        d_.recycler->ScrubAndFree(t, {alloc}, {row});  // gone (shut down)
      }
    });
  }
  Log(LogLevel::kInfo, "reclaim started",
      {F("tenant", tenant.name), F("victims", plan.victims.size()),
       F("window_iova", d_.pool->ToIova(plan.window.start)),
       F("bytes", plan.window.pages.value * page_size)});
  t.WakeMaintenance();
}

void Reclaim::Ready(Turn& t) {
  for (PendingReclaim* r : d_.reclaims->TakeReady(t.now())) {
    // Grace is over and the victims' ends are durable: once no view of
    // theirs is left (quarantine), zero their memory, then hand the window
    // over.
    const uint64_t handle = r->handle;
    if (!d_.views->AnyView(r->victims)) {
      ZeroVictims(t, handle);
      continue;
    }
    d_.views->Gate(
        r->victims, [this, handle](Turn& t) { ZeroVictims(t, handle); },
        r->deadline,
        [this, handle](Turn& t) {
          Abandon(t, handle,
                  absl::DeadlineExceededError(
                      "the deadline passed while the preempted leases' "
                      "memory was quarantined: their tenant still maps it "
                      "(physpoolctl lease get shows who)"));
        });
    t.ScanSoon();
  }
}

void Reclaim::ZeroVictims(Turn& t, uint64_t handle) {
  PendingReclaim* pr = d_.reclaims->ByHandle(handle);
  if (pr == nullptr) return;
  // A victim whose unmap failed is still reachable by its tenant's
  // devices: it is neither zeroed nor handed over (held back as stuck);
  // the reclaim fails.
  for (pglist::AllocationId v : pr->victims) {
    if (!d_.devices->IsStuck(t, v)) continue;
    Abandon(t, handle,
            absl::UnavailableError(
                "a preempted lease could not be unmapped from its tenant's "
                "devices: its memory stays out of the pool until a restart "
                "reconciles the domains"));
    return;
  }
  std::vector<pglist::PageRun> runs;
  for (pglist::AllocationId v : pr->victims) {
    if (const pglist::Allocation* a = d_.pool->Find(v))
      runs.insert(runs.end(), a->runs.begin(), a->runs.end());
  }
  d_.recycler->Zero(t, std::move(runs),
                    [this, handle](Turn& t) { Finish(t, handle); });
}

void Reclaim::Abandon(Turn& t, uint64_t handle, absl::Status why) {
  std::optional<PendingReclaim> taken = d_.reclaims->Take(handle);
  if (!taken) return;
  // Its wait ends here, as a finished reclaim's does (Finish).
  d_.wait_seconds->Observe(absl::ToDoubleSeconds(t.now() - taken->since));
  if (taken->done) {
    d_.request_ids->Answer(t, std::move(taken->done), std::move(why),
                           taken->tenant, taken->params, taken->fingerprint);
  }
  if (taken->hold) (void)d_.pool->Free(*taken->hold);
  d_.recycler->ScrubAndFree(t, taken->victims, taken->victim_rows);
  t.MemoryFreed();
}

void Reclaim::Finish(Turn& t, uint64_t handle) {
  PendingReclaim* r = d_.reclaims->ByHandle(handle);
  if (r == nullptr) return;
  std::vector<pglist::AllocationId> allocs = r->victims;
  if (r->hold) allocs.push_back(*r->hold);
  const absl::Time now = t.now();
  absl::Status refused;
  if (!r->done) {
    refused = absl::CancelledError("no longer wanted");
  } else if (now > r->deadline) {
    refused = absl::DeadlineExceededError(
        "the deadline passed during the reclaim grace period");
  } else {
    refused = d_.quota->Check(t, r->tenant, r->bytes, false);
  }
  d_.wait_seconds->Observe(absl::ToDoubleSeconds(now - r->since));
  if (!refused.ok()) {
    auto taken = d_.reclaims->Take(handle);
    if (taken->done) {
      d_.request_ids->Answer(t, std::move(taken->done), refused, taken->tenant,
                             taken->params, taken->fingerprint);
    }
    d_.recycler->FreeWhenRecorded(t, std::move(allocs),
                                  std::move(taken->victim_rows));
    return;
  }
  // The lease and the end of the victims' zeroing in one transaction.
  LeaseInfo info =
      d_.granter->MakeInfo(t, r->tenant, r->params, {r->plan.window},
                           r->params.req.preemptible, "aggressive");
  StoredLease stored = ToStored(info, {r->plan.window}, r->fingerprint);
  std::vector<int64_t> rows = r->victim_rows;
  d_.committer->Submit(
      [stored, rows](LeaseStore& s) -> absl::Status {
        for (int64_t row : rows) RETURN_IF_ERROR(s.ScrubDone(row));
        return s.PutLease(stored);
      },
      [this, handle, info, allocs](absl::Status s) {
        d_.coordinator->Locked(
            [&](Turn& t) { Granted(t, handle, info, allocs, s); });
      });
}

void Reclaim::Granted(Turn& t, uint64_t handle, const LeaseInfo& info,
                      const std::vector<pglist::AllocationId>& allocs,
                      const absl::Status& s) {
  auto taken = d_.reclaims->Take(handle);
  if (!s.ok()) {
    d_.durable->Failed(t, s);
    d_.request_ids->Answer(t, std::move(taken->done),
                           StoreUnavailable(s, "nothing was granted"),
                           taken->tenant, taken->params, taken->fingerprint);
    d_.recycler->FreeWhenRecorded(t, allocs, taken->victim_rows);
    return;
  }
  // The plan holds (its victims and free pages were kept for it): the core
  // frees the victims whole and takes the window, and counts the aggressive
  // path's success.
  for (pglist::AllocationId a : allocs) d_.recycler->Unmark(t, a);
  if (taken->hold) (void)d_.pool->Free(*taken->hold);
  for (pglist::AllocationId v : taken->victims)
    (void)d_.pool->SetPreemptible(v, true);
  const absl::Time t0 = absl::Now();
  auto a = d_.pool->CommitReclaim(taken->params.req, taken->plan);
  d_.alloc_seconds->Observe("aggressive",
                            absl::ToDoubleSeconds(absl::Now() - t0));
  if (!a.ok()) {
    // Cannot happen (the window was kept for it); never strand the
    // victims' memory.
    Log(LogLevel::kError, "reclaim plan did not hold",
        {F("error", a.status().ToString())});
    for (pglist::AllocationId v : taken->victims) (void)d_.pool->Free(v);
    a = d_.pool->Claim({taken->plan.window}, false);
  }
  if (!a.ok()) {
    Log(LogLevel::kError, "reclaimed window lost",
        {F("error", a.status().ToString())});
  } else {
    Lessor::Lease lease;
    lease.alloc = a->id;
    lease.state = Lessor::State::kLive;
    lease.request_fp = taken->fingerprint;
    lease.info = info;
    d_.lessor->Add(std::move(lease));
    t.WakeMaintenanceBy(d_.lessor->FirstDeadline(info));
    if (taken->done) {
      d_.request_ids->Answer(t, std::move(taken->done), info, taken->tenant,
                             taken->params, taken->fingerprint);
    } else {
      // Cancelled while the grant was being stored: nobody will hear of
      // the lease, so it is released at once rather than held until its
      // TTL against the tenant's quota.
      Tenant owner = taken->tenant;
      owner.lease_scope.clear();  // the tenant's own right to release it
      d_.ender->Release(t, owner, info.id, [](const absl::StatusOr<bool>&) {});
    }
  }
  t.MemoryFreed();
}

}  // namespace physpool::server
