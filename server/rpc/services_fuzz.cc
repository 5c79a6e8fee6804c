// SPDX-License-Identifier: Apache-2.0
// libFuzzer: arbitrary call sequences against the real services, in
// process (an in-process gRPC channel to PoolService and AdminService over
// a PoolManager and a sim source). Every answer must carry one of the
// documented status codes (never UNKNOWN or INTERNAL), and after each input
// the pool's free + used + scrubbing bytes must equal its size.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "server/core/clock.h"
#include "server/core/log.h"
#include "server/pool_manager.h"
#include "server/rpc/services.h"
#include "vfio/sim_source.h"

namespace {

using namespace physpool;          // NOLINT
using namespace physpool::server;  // NOLINT

constexpr uint64_t kTotal = 3 << 20;

struct World {
  std::unique_ptr<vfio::SimSource> source;
  std::unique_ptr<TenantRegistry> tenants;
  SystemClock clock;
  std::unique_ptr<PoolManager> manager;
  std::unique_ptr<Authenticator> auth;
  std::unique_ptr<PoolService> pool_service;
  std::unique_ptr<AdminService> admin_service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::Pool::Stub> pool;
  std::unique_ptr<v1::Admin::Stub> admin;
};

World& TheWorld() {
  static World* w = [] {
    // Every call would log a line: quiet, the fuzzer runs several times
    // faster.
    SetLogLevel(LogLevel::kError);
    auto* w = new World;
    vfio::SimConfig sim;
    sim.dir = "/tmp/physpool-services-fuzz-" + std::to_string(getpid());
    sim.segments = {{2 << 20, 0, 0}, {1 << 20, 1, 1}};
    w->source = std::make_unique<vfio::SimSource>(sim);
    if (!w->source->Start().ok()) std::abort();
    Tenant a;
    a.name = "a";
    a.token_sha256 = {Sha256Hex("ta")};
    a.limits.max_leases = 20;
    Tenant b;
    b.name = "b";
    b.roles = kRoleTenant | kRoleAdmin | kRolePrivileged;
    b.token_sha256 = {Sha256Hex("tb")};
    w->tenants = std::make_unique<TenantRegistry>(std::vector<Tenant>{a, b});
    ManagerOptions o;
    o.reclaim_grace = absl::Milliseconds(1);
    o.reserve_bytes = 64 << 10;
    w->manager = std::make_unique<PoolManager>(o, w->source.get(), &w->clock,
                                               w->tenants.get());
    if (!w->manager->Start().ok()) std::abort();
    w->auth = std::make_unique<Authenticator>(w->tenants.get(), false);
    w->pool_service = std::make_unique<PoolService>(
        w->manager.get(), w->auth.get(), w->tenants.get(),
        SourceFacts{"sim", {}, {}, ""});
    w->admin_service = std::make_unique<AdminService>(
        w->manager.get(), w->auth.get(), w->tenants.get());
    grpc::ServerBuilder builder;
    builder.RegisterService(w->pool_service.get());
    builder.RegisterService(w->admin_service.get());
    w->server = builder.BuildAndStart();
    auto channel = w->server->InProcessChannel(grpc::ChannelArguments());
    w->pool = v1::Pool::NewStub(channel);
    w->admin = v1::Admin::NewStub(channel);
    return w;
  }();
  return *w;
}

class Reader {
 public:
  Reader(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool done() const { return i_ >= n_; }
  uint8_t u8() { return i_ < n_ ? d_[i_++] : 0; }
  uint64_t u64() {
    uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v = v << 8 | u8();
    return v;
  }
  // Mostly small, sometimes anything.
  uint64_t size() {
    const uint8_t k = u8();
    if (k < 200) return (uint64_t{1} << (k % 22)) + (k & 1 ? u8() : 0);
    return u64();
  }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t i_ = 0;
};

void Check(const grpc::Status& s, const char* what) {
  if (s.error_code() == grpc::StatusCode::UNKNOWN ||
      s.error_code() == grpc::StatusCode::INTERNAL) {
    std::fprintf(stderr, "%s answered %d: %s\n", what, s.error_code(),
                 s.error_message().c_str());
    std::abort();
  }
}

std::unique_ptr<grpc::ClientContext> Ctx(Reader& r) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  const uint8_t who = r.u8() % 8;
  if (who < 3) ctx->AddMetadata("authorization", "Bearer ta");
  if (who >= 3 && who < 6) ctx->AddMetadata("authorization", "Bearer tb");
  if (who == 6) ctx->AddMetadata("authorization", "Bearer nobody");
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(200));
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = TheWorld();
  Reader r(data, size);
  std::vector<std::string> ids = {"", "l-0", std::string(300, 'x')};
  for (int op = 0; op < 64 && !r.done(); ++op) {
    const uint8_t kind = r.u8() % 12;
    auto ctx = Ctx(r);
    if (kind < 4) {
      v1::AllocateRequest q;
      q.set_bytes(r.size());
      if (r.u8() & 1) q.set_alignment(r.size());
      if (r.u8() & 1) q.set_boundary(r.size());
      if (r.u8() & 1) q.set_max_segments(r.u8());
      if (r.u8() % 4 == 0) {
        q.set_low(r.size());
        q.set_high(r.size());
      }
      if (r.u8() % 4 == 0) q.set_numa_node(static_cast<int8_t>(r.u8()));
      q.set_numa_strict(r.u8() % 4 == 0);
      q.set_preemptible(r.u8() & 1);
      q.set_may_reclaim(r.u8() % 4 == 0);
      q.set_may_wait(r.u8() % 8 == 0);
      q.set_ttl_seconds(r.u8() % 16 == 0 ? static_cast<uint32_t>(r.u64())
                                         : r.u8() % 3);
      if (r.u8() % 16 == 0) q.set_label(std::string(r.u8() * 2, 'l'));
      v1::AllocateResponse resp;
      const grpc::Status s = w.pool->Allocate(ctx.get(), q, &resp);
      Check(s, "Allocate");
      if (s.ok()) ids.push_back(resp.lease().id());
    } else if (kind < 8) {
      const std::string& id = ids[r.u8() % ids.size()];
      if (kind == 4) {
        v1::RenewRequest q;
        q.set_lease_id(id);
        q.set_ttl_seconds(r.u8() % 8 == 0 ? static_cast<uint32_t>(r.u64())
                                          : r.u8() % 3);
        v1::RenewResponse resp;
        Check(w.pool->Renew(ctx.get(), q, &resp), "Renew");
      } else if (kind == 5) {
        v1::ReleaseRequest q;
        q.set_lease_id(id);
        v1::ReleaseResponse resp;
        Check(w.pool->Release(ctx.get(), q, &resp), "Release");
      } else if (kind == 6) {
        v1::GetLeaseRequest q;
        q.set_lease_id(id);
        v1::GetLeaseResponse resp;
        Check(w.pool->GetLease(ctx.get(), q, &resp), "GetLease");
      } else {
        v1::RevokeLeaseRequest q;
        q.set_lease_id(id);
        v1::RevokeLeaseResponse resp;
        Check(w.admin->RevokeLease(ctx.get(), q, &resp), "RevokeLease");
      }
    } else if (kind == 8) {
      v1::SegmentRequest q;
      q.set_segment_id(r.u8() % 4);
      v1::SegmentResponse resp;
      Check(r.u8() & 1 ? w.admin->DrainSegment(ctx.get(), q, &resp)
                       : w.admin->UndrainSegment(ctx.get(), q, &resp),
            "Drain");
    } else if (kind == 9) {
      v1::OccupancyRequest q;
      if (r.u8() & 1) q.set_segment_id(r.u8() % 4);
      v1::OccupancyResponse resp;
      Check(w.admin->GetOccupancy(ctx.get(), q, &resp), "GetOccupancy");
    } else if (kind == 10) {
      v1::SetTenantLimitsRequest q;
      q.set_tenant(r.u8() & 1 ? "a" : "zz");
      q.mutable_limits()->set_max_leases(r.u8() % 30);
      v1::SetTenantLimitsResponse resp;
      Check(w.admin->SetTenantLimits(ctx.get(), q, &resp), "SetTenantLimits");
    } else {
      v1::GetStatsResponse resp;
      Check(w.admin->GetStats(ctx.get(), {}, &resp), "GetStats");
    }
  }
  // Leave the pool as found: undrain, revoke what this input holds.
  for (uint32_t seg = 0; seg < 2; ++seg)
    (void)w.manager->SetDraining(seg, false);
  for (const LeaseInfo& l : w.manager->Leases(std::nullopt, "", 1 << 30))
    (void)w.manager->Revoke(l.id, "");
  uint64_t free = 0, used = 0, total = 0;
  for (const auto& s : w.manager->Segments()) {
    free += s.info.free_pages.value;
    used += s.info.used_pages.value;
    total += s.info.avail.pages.value;
  }
  if (free + used != total || total * w.manager->page_size() != kTotal) {
    std::fprintf(stderr, "pages do not add up: free %lu used %lu total %lu\n",
                 free, used, total);
    std::abort();
  }
  return 0;
}
