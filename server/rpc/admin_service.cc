// SPDX-License-Identifier: Apache-2.0
#include "server/rpc/admin_service.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "server/rpc/page_token.h"
#include "util/status_macros.h"

namespace physpool::server {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

// --- Admin
// --------------------------------------------------------------------

absl::StatusOr<Tenant> AdminService::Admin(
    const CallbackServerContext& ctx) const {
  auto tenant = auth_->Identify(ctx);
  if (!tenant.ok()) return tenant.status();
  if (!tenant->Has(kRoleAdmin)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "tenant \"", tenant->name, "\" does not have the admin role"));
  }
  return tenant;
}

#define ADMIN_OR_DONE(ctx)                               \
  do {                                                   \
    auto admin_ = Admin(*ctx);                           \
    if (!admin_.ok()) return Done(ctx, admin_.status()); \
  } while (0)

// One page of `items` (ordered by `key`) after the token's position.
template <typename T, typename Key, typename Add>
absl::Status Page(absl::string_view list, const std::vector<T>& items,
                  int32_t page_size, const std::string& token, Key key, Add add,
                  std::string* next) {
  ASSIGN_OR_RETURN(const size_t n, PageSize(page_size, kDefaultPage, kMaxPage));
  std::string after;
  if (!token.empty()) {
    ASSIGN_OR_RETURN(after, DecodePageToken(token, list, ""));
  }
  size_t taken = 0;
  for (const T& item : items) {
    if (!token.empty() && key(item) <= after) continue;
    if (taken == n) {
      *next = EncodePageToken(list, "", after);
      break;
    }
    add(item);
    after = key(item);
    ++taken;
  }
  return absl::OkStatus();
}

// Segment ids as keys that sort like the ids.
std::string SegmentKey(uint32_t id) { return absl::StrFormat("%010u", id); }

ServerUnaryReactor* AdminService::ListSegments(
    CallbackServerContext* ctx, const v1::ListSegmentsRequest* req,
    v1::ListSegmentsResponse* resp) {
  ADMIN_OR_DONE(ctx);
  std::vector<SegmentView> segs = manager_->Segments();
  std::sort(segs.begin(), segs.end(),
            [](const auto& a, const auto& b) { return a.info.id < b.info.id; });
  return Done(ctx,
              Page(
                  "segments", segs, req->page_size(), req->page_token(),
                  [](const SegmentView& s) { return SegmentKey(s.info.id); },
                  [&](const SegmentView& s) {
                    ToProto(s, manager_->page_size(), resp->add_segments());
                  },
                  resp->mutable_next_page_token()));
}

ServerUnaryReactor* AdminService::DrainSegment(CallbackServerContext* ctx,
                                               const v1::SegmentRequest* req,
                                               v1::SegmentResponse* resp) {
  ADMIN_OR_DONE(ctx);
  auto s = manager_->SetDraining(req->segment_id(), true);
  if (s.ok()) ToProto(*s, manager_->page_size(), resp->mutable_segment());
  return Done(ctx, s.status());
}

ServerUnaryReactor* AdminService::UndrainSegment(CallbackServerContext* ctx,
                                                 const v1::SegmentRequest* req,
                                                 v1::SegmentResponse* resp) {
  ADMIN_OR_DONE(ctx);
  auto s = manager_->SetDraining(req->segment_id(), false);
  if (s.ok()) ToProto(*s, manager_->page_size(), resp->mutable_segment());
  return Done(ctx, s.status());
}

ServerUnaryReactor* AdminService::AddSegment(CallbackServerContext* ctx,
                                             const v1::AddSegmentRequest* req,
                                             v1::SegmentResponse* resp) {
  ADMIN_OR_DONE(ctx);
  auto s =
      manager_->AddSegment(req->bytes(), req->freelist(), req->numa_node());
  if (s.ok()) ToProto(*s, manager_->page_size(), resp->mutable_segment());
  return Done(ctx, s.status());
}

ServerUnaryReactor* AdminService::RemoveSegment(CallbackServerContext* ctx,
                                                const v1::SegmentRequest* req,
                                                v1::RemoveSegmentResponse*) {
  ADMIN_OR_DONE(ctx);
  return Done(ctx, manager_->RemoveSegment(req->segment_id()));
}

ServerUnaryReactor* AdminService::ListLeases(
    CallbackServerContext* ctx, const v1::AdminListLeasesRequest* req,
    v1::ListLeasesResponse* resp) {
  ADMIN_OR_DONE(ctx);
  std::optional<std::string> tenant;
  if (!req->tenant().empty()) tenant = req->tenant();
  return Done(ctx, LeasePage(manager_, "admin-leases", tenant, req->page_size(),
                             req->page_token(), View::kAdmin, resp));
}

ServerUnaryReactor* AdminService::GetLease(CallbackServerContext* ctx,
                                           const v1::GetLeaseRequest* req,
                                           v1::GetLeaseResponse* resp) {
  ADMIN_OR_DONE(ctx);
  if (auto s = CheckLeaseId(req->lease_id()); !s.ok()) return Done(ctx, s);
  auto lease = manager_->AdminGet(req->lease_id());
  if (lease.ok()) ToProto(*lease, resp->mutable_lease(), View::kAdmin);
  return Done(ctx, lease.status());
}

ServerUnaryReactor* AdminService::RevokeLease(CallbackServerContext* ctx,
                                              const v1::RevokeLeaseRequest* req,
                                              v1::RevokeLeaseResponse* resp) {
  ADMIN_OR_DONE(ctx);
  if (auto s = CheckLeaseId(req->lease_id()); !s.ok()) return Done(ctx, s);
  return Later(ctx, [&](ServerUnaryReactor* r) {
    manager_->Revoke(req->lease_id(), req->reason(),
                     [r, resp](absl::StatusOr<LeaseInfo> l) {
                       if (l.ok())
                         ToProto(*l, resp->mutable_lease(), View::kAdmin);
                       r->Finish(ToGrpc(l.status()));
                     });
  });
}

ServerUnaryReactor* AdminService::ListTenants(CallbackServerContext* ctx,
                                              const v1::ListTenantsRequest* req,
                                              v1::ListTenantsResponse* resp) {
  ADMIN_OR_DONE(ctx);
  return Done(
      ctx, Page(
               "tenants", tenants_->List(), req->page_size(), req->page_token(),
               [](const Tenant& t) { return t.name; },
               [&](const Tenant& t) {
                 ToProto(t, manager_->Usage(t.name), resp->add_tenants());
               },
               resp->mutable_next_page_token()));
}

ServerUnaryReactor* AdminService::SetTenantLimits(
    CallbackServerContext* ctx, const v1::SetTenantLimitsRequest* req,
    v1::SetTenantLimitsResponse* resp) {
  ADMIN_OR_DONE(ctx);
  if (req->tenant().empty())
    return Done(ctx, absl::InvalidArgumentError("tenant is required"));
  auto t = tenants_->SetLimits(
      req->tenant(), {req->limits().max_bytes(), req->limits().max_leases()});
  if (t.ok()) {
    manager_->LimitsChanged();  // waiters over the new limits are answered
    ToProto(*t, manager_->Usage(t->name), resp->mutable_tenant());
  }
  return Done(ctx, t.status());
}

ServerUnaryReactor* AdminService::GetStats(CallbackServerContext* ctx,
                                           const v1::GetStatsRequest*,
                                           v1::GetStatsResponse* resp) {
  ADMIN_OR_DONE(ctx);
  const ManagerStats st = manager_->Stats();
  resp->set_quarantined_bytes(st.quarantined_bytes);
  resp->set_quarantined_leases(st.quarantined_leases);
  resp->set_quarantine_scans(st.quarantine_scans);
  for (pglist::Path p : {pglist::Path::kSimple, pglist::Path::kContig,
                         pglist::Path::kMulti, pglist::Path::kAggressive}) {
    const pglist::PathCounters& c = st.pool.at(p);
    v1::PathStats* ps = resp->add_paths();
    ps->set_path(std::string(pglist::PathName(p)));
    ps->set_attempts(c.attempts);
    ps->set_successes(c.successes);
    for (int r = 1; r < pglist::kNumFailReasons; ++r) {
      if (c.failures[r] != 0) {
        (*ps->mutable_failures())[std::string(pglist::FailReasonName(
            static_cast<pglist::FailReason>(r)))] = c.failures[r];
      }
    }
  }
  for (int from = 0; from < pglist::kNumPaths; ++from) {
    for (int to = 0; to < pglist::kNumPaths; ++to) {
      if (st.pool.fallbacks[from][to] == 0) continue;
      (*resp->mutable_fallbacks())[absl::StrCat(
          pglist::PathName(static_cast<pglist::Path>(from)), "->",
          pglist::PathName(static_cast<pglist::Path>(to)))] =
          st.pool.fallbacks[from][to];
    }
  }
  (*resp->mutable_fallbacks())["any->wait"] = st.waits_started;
  uint64_t numa_fallbacks = 0;
  for (const auto& [node, n] : st.numa_fallbacks) numa_fallbacks += n;
  (*resp->mutable_fallbacks())["numa->any"] = numa_fallbacks;
  resp->set_lease_expirations(st.lease_expirations);
  for (const auto& [reason, n] : st.revocations)
    (*resp->mutable_lease_revocations())[reason] = n;
  resp->set_reclaimed_bytes(st.reclaimed_bytes);
  resp->set_scrub_backlog_bytes(st.scrub_backlog_pages * st.page_size);
  resp->set_waiting_requests(st.waiting);
  resp->set_store_errors(st.store_errors);
  resp->set_store_writable(st.store_writable);
  resp->set_scrub_failed_bytes(st.scrub_failed_pages * st.page_size);
  resp->set_watch_streams(st.watch_streams);
  return Done(ctx, absl::OkStatus());
}

ServerUnaryReactor* AdminService::GetOccupancy(CallbackServerContext* ctx,
                                               const v1::OccupancyRequest* req,
                                               v1::OccupancyResponse* resp) {
  ADMIN_OR_DONE(ctx);
  std::optional<uint32_t> id;
  if (req->has_segment_id()) id = req->segment_id();
  auto n = PageSize(req->page_size(), kDefaultRunsPage, kMaxRunsPage);
  if (!n.ok()) return Done(ctx, n.status());
  const std::string filter = id ? absl::StrCat(*id) : "";
  std::optional<std::pair<uint32_t, uint64_t>> from;
  if (!req->page_token().empty()) {
    auto pos = DecodePageToken(req->page_token(), "occupancy", filter);
    if (!pos.ok()) return Done(ctx, pos.status());
    std::pair<std::string, std::string> parts = absl::StrSplit(*pos, ':');
    uint32_t seg;
    uint64_t iova;
    if (!absl::SimpleAtoi(parts.first, &seg) ||
        !absl::SimpleAtoi(parts.second, &iova)) {
      return Done(ctx, absl::InvalidArgumentError("bad page_token"));
    }
    from = {seg, iova};
  }
  auto occ = manager_->Occupancy(id, from, *n);
  if (!occ.ok()) return Done(ctx, occ.status());
  if (occ->next) {
    resp->set_next_page_token(EncodePageToken(
        "occupancy", filter,
        absl::StrCat(occ->next->first, ":", occ->next->second)));
  }
  for (const auto& [seg, runs] : occ->segments) {
    v1::SegmentOccupancy* so = resp->add_segments();
    ToProto(seg, manager_->page_size(), so->mutable_segment());
    for (const OccupancyRun& r : runs) {
      v1::OccupancyRun* p = so->add_runs();
      p->set_state(static_cast<v1::OccupancyRun::State>(r.state));
      p->set_iova(r.iova);
      p->set_length(r.bytes);
    }
  }
  return Done(ctx, absl::OkStatus());
}

}  // namespace physpool::server
