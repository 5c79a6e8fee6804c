// SPDX-License-Identifier: Apache-2.0
#include "server/lease/placement.h"

#include <utility>

#include "absl/time/clock.h"
#include "pglist/outcome.h"

namespace physpool::server {

using pglist::FailReason;
using pglist::FailReasonOf;

Placement::Outcome Placement::Serve(Turn& t, const Tenant& tenant,
                                    const AllocateParams& p,
                                    const std::string& fp, uint64_t handle,
                                    absl::Time deadline, absl::Time since,
                                    AllocDone* done) {
  const uint64_t page_size = pool_->page_size();
  const uint64_t rounded =
      p.req.bytes > ~uint64_t{0} - page_size
          ? p.req.bytes
          : (p.req.bytes + page_size - 1) / page_size * page_size;
  if (absl::Status q = quota_->Check(t, tenant, rounded, true); !q.ok())
    return {Verdict::kRefused, q};
  const absl::Time t0 = absl::Now();
  auto a = pool_->Allocate(p.req);
  pglist::Request any_node = p.req;
  any_node.numa = -1;
  bool fell_back = false;
  if (!a.ok() && p.req.numa >= 0 && !p.numa_strict &&
      FailReasonOf(a.status()) != FailReason::kInvalid) {
    a = pool_->Allocate(any_node);
    fell_back = a.ok();
  }
  times_->Observe(a.ok() ? std::string(pglist::PathName(a->path)) : "failed",
                  absl::ToDoubleSeconds(absl::Now() - t0));
  if (a.ok()) {
    std::string path(pglist::PathName(a->path));
    if (fell_back) {
      // The preferred node had no room: served from any node, and said so
      // in the lease's path and the physpool_numa_fallback_total counter.
      ++numa_fallbacks_[p.req.numa];
      path += kNumaFallbackSuffix;
    }
    granter_->Grant(t, tenant, p, fp, *a, path, std::move(*done));
    return {Verdict::kGranted, absl::OkStatus()};
  }
  if (FailReasonOf(a.status()) != FailReason::kNoSpace || !p.may_reclaim)
    return {Verdict::kRefused, a.status()};
  AllocateParams planned = p;
  if (!p.numa_strict) planned.req = any_node;
  absl::StatusOr<pglist::ReclaimPlan> plan = pool_->PlanReclaim(planned.req);
  if (!plan.ok()) return {Verdict::kRefused, plan.status()};
  reclaim_->Start(t, tenant, planned, fp, *plan, handle, deadline, since,
                  std::move(*done));
  return {Verdict::kReclaiming, absl::OkStatus()};
}

}  // namespace physpool::server
