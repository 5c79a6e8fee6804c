// SPDX-License-Identifier: Apache-2.0
// Between the API and the daemon: Lease, SegmentInfo, TenantInfo and
// LeaseEvent messages from the daemon's types, an AllocateRequest checked
// and made AllocateParams, absl::Status as grpc::Status (same code and
// message), pages of leases, and the bound that keeps every answer within
// gRPC's message size.
//
// State: none. Thread safety: pure functions, any thread (LeasePage asks
// the manager, which takes the pool's lock). I/O: none.
// REQUIRES: nothing.
#ifndef PHYSPOOL_SERVER_RPC_CONVERT_H_
#define PHYSPOOL_SERVER_RPC_CONVERT_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "physpool/v1/physpool.grpc.pb.h"
#include "server/pool_manager.h"

namespace physpool::server {

// Pages (docs/api.md, "Pages"): default and most items per page, and the
// most bytes of leases in one answer (every answer stays below gRPC's 4 MiB).
inline constexpr size_t kDefaultPage = 100, kMaxPage = 1000;
inline constexpr size_t kDefaultRunsPage = 1000, kMaxRunsPage = 10000;
inline constexpr size_t kPageBytes = 2 << 20;

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

// Finishes a unary call at once with `s`.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx,
                               const absl::Status& s);
// Answers a unary call from a callback, on whatever thread runs it.
grpc::ServerUnaryReactor* Later(
    grpc::CallbackServerContext* ctx,
    std::function<void(grpc::ServerUnaryReactor*)> start);

// Tenants see where each run lies in their lease's view; admins also see
// the segment files behind it.
enum class View { kTenant, kAdmin };
void ToProto(const LeaseInfo& l, v1::Lease* out, View view = View::kTenant);
void ToProto(const SegmentView& s, uint64_t ps, v1::SegmentInfo* out);
void ToProto(const Tenant& t, const TenantUsage& u, v1::TenantInfo* out);
v1::LeaseEvent ToProto(const LeaseEventInfo& e);

// INVALID_ARGUMENT for ids the API refuses (empty, too long, not
// printable).
absl::Status CheckRequestId(const std::string& id);
absl::Status CheckLeaseId(const std::string& id);
// An AllocateRequest checked (INVALID_ARGUMENT saying what is wrong), its
// window clipped to its device's DMA limit.
absl::StatusOr<AllocateParams> ToParams(const v1::AllocateRequest& r,
                                        absl::Duration max_ttl,
                                        const SourceFacts& source);

// One page of live leases in id order (of `tenant`, or all), after
// `token`'s position in list `list`; INVALID_ARGUMENT for a bad size or
// token.
absl::Status LeasePage(PoolManager* manager, absl::string_view list,
                       std::optional<std::string> tenant, int32_t page_size,
                       const std::string& token, View view,
                       v1::ListLeasesResponse* resp);

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_RPC_CONVERT_H_
