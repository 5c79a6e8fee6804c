// SPDX-License-Identifier: Apache-2.0
#include "server/rpc/pool_service.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/rpc/allocate_reactor.h"
#include "server/rpc/watch_reactor.h"
#include "util/status_macros.h"

namespace physpool::server {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

// --- Pool
// ---------------------------------------------------------------------

absl::StatusOr<Tenant> PoolService::Caller(const CallbackServerContext& ctx,
                                           bool lease_scope_ok) const {
  auto tenant = auth_->Identify(ctx);
  if (!tenant.ok()) return tenant.status();
  if (!tenant->lease_scope.empty() && !lease_scope_ok) {
    return absl::PermissionDeniedError(
        "a lease access token reaches only its leases: GetLease, GetPoolInfo "
        "and their views on the fd socket (the lease's owner renews and "
        "releases it)");
  }
  if (!tenant->Has(kRoleTenant)) {
    return absl::PermissionDeniedError(
        absl::StrCat("tenant \"", tenant->name,
                     "\" does not have the tenant role (its roles: ",
                     absl::StrJoin(RoleNames(tenant->roles), ", "), ")"));
  }
  return tenant;
}

ServerUnaryReactor* PoolService::Allocate(CallbackServerContext* ctx,
                                          const v1::AllocateRequest* req,
                                          v1::AllocateResponse* resp) {
  auto tenant = Caller(*ctx);
  if (!tenant.ok()) return Done(ctx, tenant.status());
  auto params = ToParams(*req, manager_->options().max_ttl, source_);
  if (!params.ok()) return Done(ctx, params.status());
  absl::Time deadline = absl::FromChrono(ctx->deadline());
  auto* reactor = new AllocateReactor(manager_, ctx);
  reactor->Start(*tenant, *std::move(params), deadline, resp);
  return reactor;
}

ServerUnaryReactor* PoolService::Renew(CallbackServerContext* ctx,
                                       const v1::RenewRequest* req,
                                       v1::RenewResponse* resp) {
  auto tenant = Caller(*ctx);
  if (!tenant.ok()) return Done(ctx, tenant.status());
  if (auto s = CheckLeaseId(req->lease_id()); !s.ok()) return Done(ctx, s);
  if (absl::Seconds(req->ttl_seconds()) > manager_->options().max_ttl) {
    return Done(ctx, absl::InvalidArgumentError(absl::StrCat(
                         "ttl_seconds ", req->ttl_seconds(),
                         " is above the maximum of ",
                         absl::ToInt64Seconds(manager_->options().max_ttl))));
  }
  return Later(ctx, [&](ServerUnaryReactor* r) {
    manager_->Renew(*tenant, req->lease_id(), absl::Seconds(req->ttl_seconds()),
                    [r, resp](absl::StatusOr<LeaseInfo> lease) {
                      if (lease.ok()) ToProto(*lease, resp->mutable_lease());
                      r->Finish(ToGrpc(lease.status()));
                    });
  });
}

ServerUnaryReactor* PoolService::Release(CallbackServerContext* ctx,
                                         const v1::ReleaseRequest* req,
                                         v1::ReleaseResponse* resp) {
  auto tenant = Caller(*ctx);
  if (!tenant.ok()) return Done(ctx, tenant.status());
  if (auto s = CheckLeaseId(req->lease_id()); !s.ok()) return Done(ctx, s);
  return Later(ctx, [&](ServerUnaryReactor* r) {
    manager_->Release(*tenant, req->lease_id(),
                      [r, resp](absl::StatusOr<bool> released) {
                        if (released.ok()) resp->set_released(*released);
                        r->Finish(ToGrpc(released.status()));
                      });
  });
}

ServerUnaryReactor* PoolService::GetLease(CallbackServerContext* ctx,
                                          const v1::GetLeaseRequest* req,
                                          v1::GetLeaseResponse* resp) {
  auto tenant = Caller(*ctx, /*lease_scope_ok=*/true);
  if (!tenant.ok()) return Done(ctx, tenant.status());
  if (auto s = CheckLeaseId(req->lease_id()); !s.ok()) return Done(ctx, s);
  auto lease = manager_->Get(*tenant, req->lease_id());
  if (lease.ok()) ToProto(*lease, resp->mutable_lease());
  return Done(ctx, lease.status());
}

ServerUnaryReactor* PoolService::ListLeases(CallbackServerContext* ctx,
                                            const v1::ListLeasesRequest* req,
                                            v1::ListLeasesResponse* resp) {
  auto tenant = Caller(*ctx);
  if (!tenant.ok()) return Done(ctx, tenant.status());
  return Done(ctx, LeasePage(manager_, "leases", tenant->name, req->page_size(),
                             req->page_token(), View::kTenant, resp));
}

grpc::ServerWriteReactor<v1::LeaseEvent>* PoolService::Watch(
    CallbackServerContext* ctx, const v1::WatchRequest*) {
  auto tenant = Caller(*ctx);
  if (!tenant.ok()) {
    // A reactor that fails at once.
    class Fail final : public grpc::ServerWriteReactor<v1::LeaseEvent> {
     public:
      explicit Fail(const absl::Status& s) { Finish(ToGrpc(s)); }
      void OnDone() override { delete this; }
    };
    return new Fail(tenant.status());
  }
  return new WatchReactor(manager_, tenant->name,
                          manager_->options().max_watch_queue);
}

ServerUnaryReactor* PoolService::GetPoolInfo(CallbackServerContext* ctx,
                                             const v1::GetPoolInfoRequest*,
                                             v1::GetPoolInfoResponse* resp) {
  auto tenant = auth_->Identify(*ctx);
  if (!tenant.ok()) return Done(ctx, tenant.status());
  const uint64_t ps = manager_->page_size();
  resp->set_page_size(ps);
  for (const SegmentView& s : manager_->Segments()) {
    v1::SegmentInfo* info = resp->add_segments();
    ToProto(s, ps, info);
    // The segment files are the daemon's; tenants map their leases' views.
    if (!tenant->Has(kRoleAdmin)) info->clear_backing_path();
    resp->set_free_bytes(resp->free_bytes() + info->free_bytes());
    resp->set_used_bytes(resp->used_bytes() + info->used_bytes());
    resp->set_scrubbing_bytes(resp->scrubbing_bytes() +
                              info->scrubbing_bytes());
  }
  const Tenant current = tenants_->ByName(tenant->name).value_or(*tenant);
  resp->set_tenant(current.name);
  resp->mutable_limits()->set_max_bytes(current.limits.max_bytes);
  resp->mutable_limits()->set_max_leases(current.limits.max_leases);
  const TenantUsage u = manager_->Usage(current.name);
  resp->set_tenant_bytes(u.bytes);
  resp->set_tenant_leases(u.leases);
  resp->set_default_ttl_seconds(static_cast<uint32_t>(
      absl::ToInt64Seconds(manager_->options().default_ttl)));
  resp->set_max_ttl_seconds(
      static_cast<uint32_t>(absl::ToInt64Seconds(manager_->options().max_ttl)));
  resp->set_source(source_.name);
  for (const vfio::IovaRange& r : source_.iova_ranges) {
    v1::IovaRange* out = resp->add_iova_ranges();
    out->set_first(r.first);
    out->set_last(r.last);
  }
  for (const vfio::DeviceDomain& dd : manager_->DeviceDomains()) {
    v1::Device* d = resp->add_devices();
    d->set_bdf(dd.device.bdf);
    d->set_dma_limit(dd.device.dma_limit);
    d->set_domain(dd.domain);
    if (!dd.device.tenant.empty() && dd.device.tenant != tenant->name &&
        !tenant->Has(kRoleAdmin)) {
      d->set_tenant("(another tenant)");
      d->set_dma_avail(-1);
      continue;
    }
    d->set_tenant(dd.device.tenant);
    d->set_mappings(dd.mappings);
    d->set_mapped_bytes(dd.mapped_bytes);
    d->set_dma_avail(dd.dma_avail);
  }
  resp->set_fd_socket(source_.fd_socket);
  resp->set_max_runs_per_lease(manager_->options().max_runs_per_lease);
  {
    const ManagerOptions& o = manager_->options();
    resp->set_isolation(o.per_lease_views ? "per-lease" : "off");
    resp->set_isolation_detail(o.isolation_detail);
    const auto [bytes, leases] = manager_->QuarantineTotals();
    resp->set_quarantined_bytes(bytes);
    resp->set_lease_scoped(!tenant->lease_scope.empty());
    resp->set_quarantined_leases(leases);
  }
  resp->set_max_wait_ms(static_cast<uint32_t>(
      absl::ToInt64Milliseconds(manager_->options().max_wait)));
  return Done(ctx, absl::OkStatus());
}

}  // namespace physpool::server
