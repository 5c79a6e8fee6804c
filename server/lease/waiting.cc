// SPDX-License-Identifier: Apache-2.0
#include "server/lease/waiting.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace physpool::server {

using pglist::FailReason;
using pglist::FailReasonOf;

bool Waitable(FailReason r) {
  return r == FailReason::kNoSpace || r == FailReason::kReserve ||
         r == FailReason::kNoReclaim;
}

bool Waiting::Enqueue(Turn& t, Waiter w) {
  if (waiters_->CountOf(w.tenant.name) >= options_->max_waiters_per_tenant) {
    request_ids_->Answer(
        t, std::move(w.done),
        absl::ResourceExhaustedError(absl::StrCat(
            "wait.max_waiters_per_tenant: tenant \"", w.tenant.name,
            "\" already has ", options_->max_waiters_per_tenant,
            " waiting requests")),
        w.tenant, w.params, w.fingerprint);
    return false;
  }
  waiters_->Push(std::move(w));
  ++waits_started_;
  t.WakeMaintenance();
  return true;
}

void Waiting::Retry(Turn& t) {
  if (waiters_->size() == 0) return;
  const absl::Time now = t.now();
  const uint64_t page_size = pool_->page_size();
  const uint64_t free_pages = pool_->allocatable_free_pages().value;
  for (auto it = waiters_->begin(); it != waiters_->end();) {
    Waiter& w = *it;
    // Cheap first: a request cannot fit in fewer free pages than it needs
    // (a reclaiming one might).
    if (!w.params.may_reclaim &&
        (w.params.req.bytes + page_size - 1) / page_size > free_pages) {
      ++it;
      continue;
    }
    if (w.deadline <= now ||  // the maintenance thread ends it
        waiters_->StarvingRival(w.params, now, it) != nullptr) {
      ++it;
      continue;
    }
    const Placement::Outcome o =
        placement_->Serve(t, w.tenant, w.params, w.fingerprint, w.handle,
                          w.deadline, w.since, &w.done);
    if (o.verdict == Placement::Verdict::kGranted) {
      wait_seconds_->Observe(absl::ToDoubleSeconds(now - w.since));
      it = waiters_->Erase(it);
    } else if (o.verdict == Placement::Verdict::kReclaiming) {
      // Its wait is counted once, when the reclaim ends (reclaim.h).
      it = waiters_->Erase(it);
    } else if (!Waitable(FailReasonOf(o.why))) {
      // It can never be served as it stands (quota, never fits): say so now
      // rather than hold others back.
      wait_seconds_->Observe(absl::ToDoubleSeconds(now - w.since));
      request_ids_->Answer(t, std::move(w.done), o.why, w.tenant, w.params,
                           w.fingerprint);
      it = waiters_->Erase(it);
    } else {
      ++it;
    }
  }
}

void Waiting::Expire(Turn& t) {
  const absl::Time now = t.now();
  waiters_->TakeExpired(now, [&](Waiter w) {
    wait_seconds_->Observe(absl::ToDoubleSeconds(now - w.since));
    const absl::Duration waited = now - w.since;
    request_ids_->Answer(
        t, std::move(w.done),
        absl::DeadlineExceededError(absl::StrCat(
            "waited ",
            absl::FormatDuration(absl::Trunc(waited, absl::Milliseconds(1))),
            " for ", w.params.req.bytes, " bytes; none came free")),
        w.tenant, w.params, w.fingerprint);
  });
}

void Waiting::Cancel(Turn& t, uint64_t handle) {
  const absl::Status cancelled =
      absl::CancelledError("the caller cancelled the request");
  if (auto w = waiters_->Remove(handle)) {
    t.Later([d = std::move(w->done), cancelled] { d(cancelled); });
  } else if (PendingReclaim* r = reclaims_->ByCaller(handle);
             r != nullptr && r->done) {
    // The victims are preempted already; their memory still waits out the
    // grace period, is zeroed and comes back, but becomes no lease.
    t.Later([d = std::move(r->done), cancelled] { d(cancelled); });
    r->done = nullptr;
  }
}

size_t Waiting::Drain(Turn& t, const absl::Status& why) {
  size_t answered = 0;
  waiters_->Drain([&](Waiter w) {
    request_ids_->Answer(t, std::move(w.done), why, w.tenant, w.params,
                         w.fingerprint);
    ++answered;
  });
  reclaims_->ForEach([&](PendingReclaim& r) {
    if (r.done) {
      t.Later([d = std::move(r.done), why] { d(why); });
      r.done = nullptr;
      ++answered;
    }
  });
  return answered;
}

}  // namespace physpool::server
