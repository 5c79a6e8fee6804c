// SPDX-License-Identifier: Apache-2.0
#include "dra/driver.h"

#include <grpcpp/impl/client_unary_call.h>
#include <grpcpp/impl/rpc_method.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "dra/claim_files.h"
#include "dra/claim_lease.h"
#include "dra/cleanup.h"

namespace physpool::dra {
namespace {

using nlohmann::json;

}  // namespace

void CrashPoint(const char* step) {
  const char* at = std::getenv("PHYSPOOL_DRA_CRASH_AT");
  if (at != nullptr && std::strcmp(at, step) == 0) {
    fprintf(stderr, "physpool-dra: crash point %s: SIGKILL\n", step);
    fflush(stderr);
    kill(getpid(), SIGKILL);
  }
}

Driver::Driver(DriverOptions options, std::shared_ptr<grpc::Channel> physpool,
               std::unique_ptr<KubeClient> kube, ClaimState state)
    : opts_(std::move(options)),
      channel_(std::move(physpool)),
      pool_(v1::Pool::NewStub(channel_)),
      kube_(std::move(kube)),
      state_(std::move(state)),
      slices_(opts_.driver_name, opts_.node_name, kube_.get()) {}

std::unique_ptr<grpc::ClientContext> Driver::Context(bool wait) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!opts_.physpool_token.empty())
    ctx->AddMetadata("authorization", "Bearer " + opts_.physpool_token);
  // wait: physpoold restarting is waited for, within the deadline.
  ctx->set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Seconds(wait ? 20 : 5)));
  ctx->set_wait_for_ready(wait);
  return ctx;
}
absl::StatusOr<json> Driver::GetClaim(const std::string& ns,
                                      const std::string& name) {
  absl::StatusOr<KubeResponse> r =
      kube_->Do("GET", absl::StrCat("/apis/resource.k8s.io/v1/namespaces/", ns,
                                    "/resourceclaims/", name));
  if (!r.ok()) return r.status();
  if (r->code == 404 && (r->body.value("reason", "") != "NotFound" ||
                         r->body.value("/details/kind"_json_pointer,
                                       std::string()) != "resourceclaims")) {
    // Not the API server saying the claim is gone (resource.k8s.io/v1 not
    // served, a proxy, a wrong --kube-api): never a reason to unprepare.
    return absl::UnavailableError(absl::StrCat(
        "GET ResourceClaim ", ns, "/", name,
        ": HTTP 404 without a NotFound Status for resourceclaims (is "
        "resource.k8s.io/v1 served at --kube-api?)"));
  }
  if (absl::Status s =
          KubeClient::Check(*r, absl::StrCat("ResourceClaim ", ns, "/", name));
      !s.ok()) {
    return s;
  }
  return r->body;
}

absl::StatusOr<std::map<std::string, std::string>> Driver::ListLeases() {
  std::map<std::string, std::string> out;
  v1::ListLeasesRequest req;
  for (;;) {
    v1::ListLeasesResponse resp;
    auto ctx = Context();
    if (absl::Status s =
            FromGrpc(pool_->ListLeases(ctx.get(), req, &resp), "ListLeases");
        !s.ok()) {
      return s;
    }
    for (const v1::Lease& l : resp.leases()) out[l.id()] = l.label();
    if (resp.next_page_token().empty()) return out;
    req.set_page_token(resp.next_page_token());
  }
}

absl::Status Driver::ReleaseLease(const std::string& id) {
  v1::ReleaseRequest req;
  req.set_lease_id(id);
  v1::ReleaseResponse resp;
  auto ctx = Context();
  const grpc::Status s = pool_->Release(ctx.get(), req, &resp);
  // Gone already (released, expired, revoked): nothing to do.
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) return absl::OkStatus();
  return FromGrpc(s, absl::StrCat("Release ", id));
}

std::vector<PreparedDevice> Driver::DevicesOf(const ClaimRecord& r) const {
  std::vector<PreparedDevice> out;
  for (const ClaimResult& x : r.results) {
    out.push_back({{x.request},
                   opts_.node_name,
                   x.device,
                   {absl::StrCat(CdiKind(opts_), "=", r.uid)}});
  }
  return out;
}

absl::Status Driver::Unprepare(const std::string& uid) {
  absl::MutexLock l(&mu_);
  return UnprepareLocked(uid);
}

absl::Status Driver::UnprepareLocked(const std::string& uid) {
  const ClaimRecord* found = state_.Find(uid);
  if (found == nullptr) return absl::OkStatus();  // unknown: nothing to do
  ClaimRecord rec = *found;
  if (rec.phase != ClaimRecord::Phase::kUnpreparing) {
    rec.phase = ClaimRecord::Phase::kUnpreparing;
    if (absl::Status s = state_.Put(rec); !s.ok()) return s;
  }
  CrashPoint("unprepare-recorded");
  // The recorded leases, and any granted before the record named them (a
  // kill -9 between Allocate and the prepared record): by their label. Only
  // a result without its lease needs the list of every lease; a lease the
  // record does not name beside a named one is the cleanup pass's.
  std::set<std::string> leases;
  bool unnamed = false;
  for (const ClaimResult& x : rec.results) {
    if (!x.lease.empty()) leases.insert(x.lease);
    unnamed |= x.lease.empty();
  }
  if (unnamed) {
    absl::StatusOr<std::map<std::string, std::string>> all = ListLeases();
    if (!all.ok()) return all.status();
    for (const auto& [id, label] : *all) {
      if (UidOfLabel(label) == uid) leases.insert(id);
    }
  }
  for (const std::string& id : leases) {
    if (absl::Status s = ReleaseLease(id); !s.ok()) return s;
  }
  CrashPoint("unprepare-released");
  RemoveClaimFiles(opts_, uid);
  CrashPoint("unprepare-cdi-removed");
  if (absl::Status s = state_.Erase(uid); !s.ok()) return s;
  CrashPoint("unprepare-done");
  return absl::OkStatus();
}

void Driver::RenewAll() {
  absl::MutexLock l(&mu_);
  std::set<std::string> leases;
  bool preparing = false;
  for (const auto& [uid, r] : state_.claims()) {
    if (r.phase == ClaimRecord::Phase::kUnpreparing) continue;
    preparing |= r.phase == ClaimRecord::Phase::kPreparing;
    for (const ClaimResult& x : r.results) {
      if (!x.lease.empty()) leases.insert(x.lease);
    }
  }
  if (preparing) {
    // Granted, but a kill -9 came before the record named it: found by its
    // label, it lives until kubelet's retry adopts it (or a cleanup pass
    // unprepares its claim).
    if (auto all = ListLeases(); all.ok()) {
      for (const auto& [id, label] : *all) {
        const ClaimRecord* r = state_.Find(UidOfLabel(label));
        if (r != nullptr && r->phase == ClaimRecord::Phase::kPreparing)
          leases.insert(id);
      }
    }
  }
  for (const std::string& id : leases) {
    v1::RenewRequest req;
    req.set_lease_id(id);
    req.set_ttl_seconds(opts_.lease_ttl_seconds);
    v1::RenewResponse resp;
    auto ctx = Context();
    if (grpc::Status s = pool_->Renew(ctx.get(), req, &resp); !s.ok()) {
      // Gone: the next cleanup pass has its claim prepared again.
      fprintf(stderr, "physpool-dra: renewing lease %s: %s\n", id.c_str(),
              s.error_message().c_str());
    }
  }
}

absl::Status Driver::Cleanup() {
  absl::MutexLock l(&mu_);
  CleanupPass::Ops ops;
  // Called by the pass under mu_, which this thread holds.
  ops.list_leases = [this]()
                        ABSL_NO_THREAD_SAFETY_ANALYSIS { return ListLeases(); };
  ops.get_claim = [this](const std::string& ns, const std::string& name) {
    return GetClaim(ns, name);
  };
  ops.unprepare =
      [this](const std::string& uid)
          ABSL_NO_THREAD_SAFETY_ANALYSIS { return UnprepareLocked(uid); };
  ops.release_lease =
      [this](const std::string& id)
          ABSL_NO_THREAD_SAFETY_ANALYSIS { return ReleaseLease(id); };
  return CleanupPass(opts_.driver_name, opts_.node_name, std::move(ops))
      .Run(&state_);
}

absl::Status Driver::CheckServing() {
  // grpc.health.v1.Health/Check for the whole server (service ""): an
  // empty HealthCheckRequest; the answer's field 1 is the status
  // (1 SERVING, 2 NOT_SERVING), sent as bytes 0x08 <status>.
  auto ctx = Context(/*wait=*/false);
  grpc::Slice empty;  // the empty message
  grpc::ByteBuffer req(&empty, 1), resp;
  const grpc::Status s = grpc::internal::BlockingUnaryCall(
      channel_.get(),
      grpc::internal::RpcMethod("/grpc.health.v1.Health/Check",
                                grpc::internal::RpcMethod::NORMAL_RPC),
      ctx.get(), req, &resp);
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::UnavailableError(
        absl::StrCat("health check: ", s.error_message()));
  }
  // No health service (or not for us): GetPoolInfo decides.
  if (!s.ok()) return absl::OkStatus();
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (resp.Dump(&slices).ok()) {
    for (const grpc::Slice& x : slices)
      bytes.append(reinterpret_cast<const char*>(x.begin()), x.size());
  }
  if (bytes.size() == 2 && bytes[0] == 0x08 && bytes[1] == 0x01)
    return absl::OkStatus();
  return absl::UnavailableError("physpoold says NOT_SERVING");
}

absl::StatusOr<PoolFacts> Driver::ReadPool(bool wait) {
  v1::GetPoolInfoResponse info;
  auto ctx = Context(wait);
  if (absl::Status s =
          FromGrpc(pool_->GetPoolInfo(ctx.get(), {}, &info), "GetPoolInfo");
      !s.ok()) {
    return s;
  }
  // What this driver's claims hold per device: the rest of the used bytes
  // are other tenants', not the scheduler's to hand out.
  std::map<std::string, uint64_t> ours;
  for (const auto& [uid, r] : state_.claims()) {
    for (const ClaimResult& x : r.results) ours[x.device] += x.bytes;
  }
  return PoolFactsFrom(info, ours);
}

json Driver::DevicesForTest() {
  absl::MutexLock l(&mu_);
  return devices_;
}

absl::Status Driver::Publish(bool force) {
  absl::MutexLock l(&mu_);
  // Not waiting for physpoold: one that is away is published as such now.
  const absl::Status health = CheckServing();
  absl::StatusOr<PoolFacts> f = health.ok() ? ReadPool(/*wait=*/false)
                                            : absl::StatusOr<PoolFacts>(health);
  if (!f.ok() && !absl::IsUnavailable(f.status()) &&
      !absl::IsDeadlineExceeded(f.status())) {
    return f.status();  // e.g. PERMISSION_DENIED: the slice stays
  }
  if (f.ok()) {
    last_pool_ = *f;
  } else if (!last_pool_) {
    return f.status();  // nothing to say yet
  }
  if (f.ok() != serving_) {
    fprintf(stderr, "physpool-dra: physpoold %s: the slice says so%s%s\n",
            f.ok() ? "is serving again" : "is not serving", f.ok() ? "" : ": ",
            f.ok() ? "" : std::string(f.status().message()).c_str());
    serving_ = f.ok();
  }
  devices_ = SliceDevices(*last_pool_, f.ok());
  return slices_.Publish(devices_, force);
}

}  // namespace physpool::dra
