// SPDX-License-Identifier: Apache-2.0
#include "server/lease/admission.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "pglist/outcome.h"
#include "server/lease/request_fingerprint.h"

namespace physpool::server {

using pglist::FailReason;
using pglist::FailReasonOf;

uint64_t Admission::Admit(Turn& t, const Tenant& tenant, AllocateParams params,
                          absl::Time deadline, AllocDone done) {
  const std::string fp = RequestFingerprint(params);
  const std::optional<std::string> access_owner =
      params.access_sha256.empty()
          ? std::nullopt
          : d_.lessor->TenantOfAccess(params.access_sha256);
  auto refuse = [&](absl::Status s) {
    t.Later([d = std::move(done), s] { d(s); });
    return uint64_t{0};
  };
  if (!t.accepting()) {
    return refuse(absl::FailedPreconditionError("physpoold is shutting down"));
  }
  if (!params.access_sha256.empty() && !d_.options->per_lease_views) {
    return refuse(absl::FailedPreconditionError(
        "access_token_sha256 needs per-lease views (isolation: off hands out "
        "whole segments, which reach other leases)"));
  }
  if (access_owner && *access_owner != tenant.name) {
    return refuse(absl::InvalidArgumentError(
        "access_token_sha256 is the hash of a token another tenant's leases "
        "carry: choose a new random token"));
  }
  uint64_t handle = 0;
  if (!params.request_id.empty() &&
      Retry(t, tenant, params, fp, deadline, &done, &handle)) {
    return handle;
  }
  return New(t, tenant, std::move(params), fp, deadline, std::move(done));
}

bool Admission::Retry(Turn& t, const Tenant& tenant,
                      const AllocateParams& params, const std::string& fp,
                      absl::Time deadline, AllocDone* done, uint64_t* handle) {
  const std::string& rid = params.request_id;
  if (Lessor::Lease* lease = d_.lessor->ByRequest(tenant.name, rid)) {
    if (!SameRequest(lease->request_fp, params)) {
      d_.request_ids->Answer(
          t, std::move(*done),
          RequestIds::Mismatch(rid, "lease " + lease->info.id), tenant, params,
          fp);
    } else if (lease->state == Lessor::State::kCommitting) {
      d_.granter->Attach(t, lease->info.id, std::move(*done));
    } else {
      t.Later([d = std::move(*done), info = lease->info] { d(info); });
    }
    return true;
  }
  if (auto ended = d_.lessor->EndedByRequest(tenant.name, rid)) {
    t.Later([d = std::move(*done), ended, rid] {
      d(absl::FailedPreconditionError(
          absl::StrCat("request_id \"", rid, "\" was granted lease ",
                       ended->first, ", which has ended (", ended->second.how,
                       "); a new request needs a new request_id")));
    });
    return true;
  }
  if (auto failure = d_.lessor->FailureOf(tenant.name, rid)) {
    absl::Status s = failure->second == fp
                         ? failure->first
                         : RequestIds::Mismatch(rid, "a request that failed");
    t.Later([d = std::move(*done), s] { d(s); });
    return true;
  }
  // A retry takes over a wait or a reclaim (the first caller is likely
  // gone), with the same cap on how long it may wait as a new request.
  const absl::Time capped = std::min(deadline, t.now() + d_.options->max_wait);
  if (Waiter* w = d_.waiters->ByRequest(tenant.name, rid)) {
    if (w->fingerprint != fp) {
      t.Later([d = std::move(*done),
               s = RequestIds::Mismatch(rid, "a waiting request")] { d(s); });
    } else {
      t.Later([d = std::move(w->done)] {
        d(absl::AbortedError(
            "a retry with the same request_id took over this wait"));
      });
      w->done = std::move(*done);
      w->deadline = capped;
      // A handle of its own: the first caller's cancel must not reach it.
      w->handle = next_handle_++;
      *handle = w->handle;
      t.WakeMaintenance();
    }
    return true;
  }
  if (PendingReclaim* r = d_.reclaims->ByRequest(tenant.name, rid)) {
    if (r->fingerprint != fp) {
      t.Later([d = std::move(*done),
               s = RequestIds::Mismatch(rid, "a reclaim")] { d(s); });
    } else {
      if (r->done) {
        t.Later([d = std::move(r->done)] {
          d(absl::AbortedError(
              "a retry with the same request_id took over this request"));
        });
      }
      r->done = std::move(*done);
      r->deadline = capped;
      r->caller = next_handle_++;
      *handle = r->caller;
    }
    return true;
  }
  return false;
}

uint64_t Admission::New(Turn& t, const Tenant& tenant, AllocateParams params,
                        const std::string& fp, absl::Time deadline,
                        AllocDone done) {
  const absl::Time now = t.now();
  // wait.max_ms caps what may wait: for memory, or for a reclaim (its grace
  // period, its victims' quarantine).
  if (params.may_wait || params.may_reclaim)
    deadline = std::min(deadline, now + d_.options->max_wait);
  const uint64_t handle = next_handle_++;
  Placement::Outcome o;
  if (const Waiter* rival =
          d_.waiters->StarvingRival(params, now, d_.waiters->end())) {
    o.why = pglist::FailWith(
        absl::StatusCode::kResourceExhausted, FailReason::kNoSpace,
        absl::StrCat("no space now: an older waiting request for the same "
                     "memory (",
                     rival->params.req.bytes,
                     " bytes) is served first (docs/api.md, \"Waiting\")"));
  } else {
    o = d_.placement->Serve(t, tenant, params, fp, handle, deadline, now,
                            &done);
  }
  if (o.verdict != Placement::Verdict::kRefused) return handle;
  if (params.may_wait && deadline > now && Waitable(FailReasonOf(o.why))) {
    const bool queued =
        d_.waiting->Enqueue(t, {handle, tenant, std::move(params), fp, deadline,
                                now, std::move(done)});
    return queued ? handle : 0;
  }
  d_.request_ids->Answer(t, std::move(done), o.why, tenant, params, fp);
  return 0;
}

}  // namespace physpool::server
