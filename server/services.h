// The gRPC services: physpool.v1.Pool (tenants) and physpool.v1.Admin.
// Each handler authenticates the caller, calls the PoolManager and maps its
// absl::Status to a grpc::Status with the same code and message.
#ifndef PHYSPOOL_SERVER_SERVICES_H_
#define PHYSPOOL_SERVER_SERVICES_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "physpool/v1/physpool.grpc.pb.h"
#include "server/pool_manager.h"
#include "server/tenants.h"

namespace physpool::server {

// Who is calling: a bearer token ("authorization: Bearer <token>"), else an
// mTLS client certificate's common name, else (embedded default,
// implicit_tenant: true) the implicit tenant, but only for a call that came
// over the unix socket: over TCP every caller must present credentials.
// UNAUTHENTICATED otherwise. Never takes the pool's lock (a token no tenant
// holds is looked up among the lease access tokens, access_tokens.h).
class Authenticator {
 public:
  // `access` (optional) names the tenant whose live leases carry a lease
  // access token's hash (PoolManager::TenantOfAccessToken).
  using AccessLookup =
      std::function<std::optional<std::string>(const std::string& sha256)>;
  Authenticator(const TenantRegistry* tenants, bool implicit_tenant,
                AccessLookup access = nullptr)
      : tenants_(tenants),
        implicit_(implicit_tenant),
        access_(std::move(access)) {}
  absl::StatusOr<Tenant> Identify(const grpc::ServerContextBase& ctx) const;
  // The tenant of a bare bearer token ("" = none given: the implicit
  // tenant if there is one), for the fd socket.
  absl::StatusOr<Tenant> IdentifyToken(absl::string_view token) const;

  // The implicit tenant of the embedded default: all roles.
  static Tenant Implicit();

 private:
  const TenantRegistry* tenants_;
  bool implicit_;
  AccessLookup access_;
};

grpc::Status ToGrpc(const absl::Status& s);

// Every answer stays within this (the server's send limit: clients'
// receive limit is gRPC's 4 MiB by default).
inline constexpr size_t kMaxAnswerBytes = 4 << 20;
// At most this many holders of a quarantined lease are listed
// (Quarantine.more_holders counts the others).
inline constexpr size_t kMaxHoldersShown = 16;
// An upper bound of the encoded size of an answer that carries one lease
// of `runs` runs, seen by an admin (each run with its backing path, of at
// most `max_path` bytes), with everything else at its largest: a list's
// page always holds its first lease when this is at most kMaxAnswerBytes.
size_t LeaseAnswerBound(uint32_t runs, size_t max_path);
// The most runs a lease may have for its answer to fit kMaxAnswerBytes.
uint32_t MaxRunsPerAnswer(size_t max_path);

// What GetPoolInfo says about the memory source; fixed at start.
struct SourceFacts {
  std::string name;  // sim, vfio
  std::vector<vfio::IovaRange> iova_ranges;
  std::vector<vfio::VfioDevice> devices;
  std::string fd_socket;
};

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

#endif  // PHYSPOOL_SERVER_SERVICES_H_
