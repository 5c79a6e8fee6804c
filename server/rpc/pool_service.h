// SPDX-License-Identifier: Apache-2.0
// physpool.v1.Pool, the tenants' service (docs/api.md): each handler
// authenticates the caller, checks the request, calls the PoolManager and
// answers with its status (same code and message). Allocate and Watch run
// a reactor each (allocate_reactor.h, watch_reactor.h).
//
// State: the memory source's facts, fixed at construction.
// Thread safety: thread-safe; gRPC calls the handlers on its threads, and
// a deferred answer (Renew, Release) is sent from whichever thread the
// manager completes it on.
// I/O: none of its own (gRPC sends the answers; the manager does the
// work).
// REQUIRES: `manager`, `auth` and `tenants` outlive the gRPC server it is
// registered with.
#ifndef PHYSPOOL_SERVER_RPC_POOL_SERVICE_H_
#define PHYSPOOL_SERVER_RPC_POOL_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "physpool/v1/physpool.grpc.pb.h"
#include "server/lease/tenants.h"
#include "server/pool_manager.h"
#include "server/rpc/authenticator.h"
#include "server/rpc/convert.h"

namespace physpool::server {

class PoolService final : public physpool::v1::Pool::CallbackService {
 public:
  PoolService(PoolManager* manager, const Authenticator* auth,
              const TenantRegistry* tenants, SourceFacts source)
      : manager_(manager),
        auth_(auth),
        tenants_(tenants),
        source_(std::move(source)) {}

  grpc::ServerUnaryReactor* Allocate(grpc::CallbackServerContext* ctx,
                                     const v1::AllocateRequest* req,
                                     v1::AllocateResponse* resp) override;
  grpc::ServerUnaryReactor* Renew(grpc::CallbackServerContext* ctx,
                                  const v1::RenewRequest* req,
                                  v1::RenewResponse* resp) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* ctx,
                                    const v1::ReleaseRequest* req,
                                    v1::ReleaseResponse* resp) override;
  grpc::ServerUnaryReactor* GetLease(grpc::CallbackServerContext* ctx,
                                     const v1::GetLeaseRequest* req,
                                     v1::GetLeaseResponse* resp) override;
  grpc::ServerUnaryReactor* ListLeases(grpc::CallbackServerContext* ctx,
                                       const v1::ListLeasesRequest* req,
                                       v1::ListLeasesResponse* resp) override;
  grpc::ServerWriteReactor<v1::LeaseEvent>* Watch(
      grpc::CallbackServerContext* ctx, const v1::WatchRequest* req) override;
  grpc::ServerUnaryReactor* GetPoolInfo(grpc::CallbackServerContext* ctx,
                                        const v1::GetPoolInfoRequest* req,
                                        v1::GetPoolInfoResponse* resp) override;

 private:
  // The calling tenant (with the tenant role). A lease access token's
  // holder is refused unless `lease_scope_ok` (the call checks the scope).
  absl::StatusOr<Tenant> Caller(const grpc::CallbackServerContext& ctx,
                                bool lease_scope_ok = false) const;

  PoolManager* manager_;
  const Authenticator* auth_;
  const TenantRegistry* tenants_;
  const SourceFacts source_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_RPC_POOL_SERVICE_H_
