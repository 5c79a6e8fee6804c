// SPDX-License-Identifier: Apache-2.0
// physpool.v1.Admin, the admins' service (docs/api.md, "Admin"): every
// handler requires the admin role, then calls the PoolManager or the
// tenant registry.
//
// State: none (the pointers it is given).
// Thread safety: thread-safe; gRPC calls the handlers on its threads, and
// RevokeLease answers from whichever thread the manager completes it on.
// I/O: none of its own (gRPC sends the answers; the manager and the
// registry do the work).
// REQUIRES: `manager`, `auth` and `tenants` outlive the gRPC server it is
// registered with.
#ifndef PHYSPOOL_SERVER_RPC_ADMIN_SERVICE_H_
#define PHYSPOOL_SERVER_RPC_ADMIN_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "physpool/v1/physpool.grpc.pb.h"
#include "server/lease/tenants.h"
#include "server/pool_manager.h"
#include "server/rpc/authenticator.h"
#include "server/rpc/convert.h"

namespace physpool::server {

class AdminService final : public physpool::v1::Admin::CallbackService {
 public:
  AdminService(PoolManager* manager, const Authenticator* auth,
               TenantRegistry* tenants)
      : manager_(manager), auth_(auth), tenants_(tenants) {}

  grpc::ServerUnaryReactor* ListSegments(
      grpc::CallbackServerContext* ctx, const v1::ListSegmentsRequest* req,
      v1::ListSegmentsResponse* resp) override;
  grpc::ServerUnaryReactor* DrainSegment(grpc::CallbackServerContext* ctx,
                                         const v1::SegmentRequest* req,
                                         v1::SegmentResponse* resp) override;
  grpc::ServerUnaryReactor* UndrainSegment(grpc::CallbackServerContext* ctx,
                                           const v1::SegmentRequest* req,
                                           v1::SegmentResponse* resp) override;
  grpc::ServerUnaryReactor* AddSegment(grpc::CallbackServerContext* ctx,
                                       const v1::AddSegmentRequest* req,
                                       v1::SegmentResponse* resp) override;
  grpc::ServerUnaryReactor* RemoveSegment(
      grpc::CallbackServerContext* ctx, const v1::SegmentRequest* req,
      v1::RemoveSegmentResponse* resp) override;
  grpc::ServerUnaryReactor* ListLeases(grpc::CallbackServerContext* ctx,
                                       const v1::AdminListLeasesRequest* req,
                                       v1::ListLeasesResponse* resp) override;
  grpc::ServerUnaryReactor* GetLease(grpc::CallbackServerContext* ctx,
                                     const v1::GetLeaseRequest* req,
                                     v1::GetLeaseResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeLease(grpc::CallbackServerContext* ctx,
                                        const v1::RevokeLeaseRequest* req,
                                        v1::RevokeLeaseResponse* resp) override;
  grpc::ServerUnaryReactor* ListTenants(grpc::CallbackServerContext* ctx,
                                        const v1::ListTenantsRequest* req,
                                        v1::ListTenantsResponse* resp) override;
  grpc::ServerUnaryReactor* SetTenantLimits(
      grpc::CallbackServerContext* ctx, const v1::SetTenantLimitsRequest* req,
      v1::SetTenantLimitsResponse* resp) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                     const v1::GetStatsRequest* req,
                                     v1::GetStatsResponse* resp) override;
  grpc::ServerUnaryReactor* GetOccupancy(grpc::CallbackServerContext* ctx,
                                         const v1::OccupancyRequest* req,
                                         v1::OccupancyResponse* resp) override;

 private:
  // The caller if it has the admin role, else the error to return.
  absl::StatusOr<Tenant> Admin(const grpc::CallbackServerContext& ctx) const;

  PoolManager* manager_;
  const Authenticator* auth_;
  TenantRegistry* tenants_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_RPC_ADMIN_SERVICE_H_
