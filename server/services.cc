#include "server/services.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/page_token.h"
#include "util/status_macros.h"

namespace physpool::server {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

// Pages (docs/api.md, "Pages"): default and most items per page, and the
// most bytes of leases in one answer (every answer stays below gRPC's 4 MiB).
constexpr size_t kDefaultPage = 100, kMaxPage = 1000;
constexpr size_t kDefaultRunsPage = 1000, kMaxRunsPage = 10000;
constexpr size_t kPageBytes = 2 << 20;

// Finishes a unary call at once with `s`.
ServerUnaryReactor* Done(CallbackServerContext* ctx, const absl::Status& s) {
  ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(ToGrpc(s));
  return r;
}

int64_t UnixMillis(absl::Time t) { return absl::ToUnixMillis(t); }

// Tenants see where each run lies in their lease's view; admins also see
// the segment files behind it.
enum class View { kTenant, kAdmin };

void ToProto(const LeaseInfo& l, v1::Lease* out, View view = View::kTenant) {
  out->set_id(l.id);
  out->set_tenant(l.tenant);
  uint64_t view_offset = 0;
  for (const LeaseRun& r : l.runs) {
    v1::Run* p = out->add_runs();
    p->set_iova(r.iova);
    p->set_length(r.bytes);
    if (view == View::kAdmin) {
      p->set_backing_path(r.backing_path);
      p->set_backing_offset(r.backing_offset);
    }
    p->set_segment_id(r.segment_id);
    p->set_view_offset(view_offset);
    view_offset += r.bytes;
  }
  if (l.quarantine) {
    v1::Quarantine* q = out->mutable_quarantine();
    q->set_since_unix_ms(absl::ToUnixMillis(l.quarantine->since));
    for (const Holder& h : l.quarantine->holders) {
      if (static_cast<size_t>(q->holders_size()) == kMaxHoldersShown) {
        q->set_more_holders(q->more_holders() + 1);
        continue;
      }
      v1::Holder* o = q->add_holders();
      o->set_pid(h.pid);
      o->set_uid(h.uid);
      o->set_command(h.command);
      o->set_fd(h.has_fd);
      o->set_mapped(h.maps);
      o->set_uninspected(h.uninspected);
      o->set_references(h.references);
    }
  }
  out->set_bytes(l.bytes);
  out->set_preemptible(l.preemptible);
  out->set_expires_unix_ms(UnixMillis(l.expires));
  out->set_ttl_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(l.ttl)));
  out->set_path(l.path);
  out->set_label(l.label);
  out->set_request_id(l.request_id);
  out->set_has_access_token(!l.access_sha256.empty());
}

void ToProto(const SegmentView& s, uint64_t ps, v1::SegmentInfo* out) {
  out->set_id(s.info.id);
  out->set_iova(s.info.spec.iova);
  out->set_bytes(s.info.avail.pages.value * ps);
  out->set_freelist(s.info.spec.freelist);
  out->set_numa_node(s.info.spec.numa);
  out->set_draining(s.info.draining);
  out->set_free_bytes(s.info.free_pages.value * ps);
  out->set_used_bytes((s.info.used_pages.value - s.scrubbing_pages) * ps);
  out->set_scrubbing_bytes(s.scrubbing_pages * ps);
  out->set_largest_free_run_bytes(s.info.largest_free_run.value * ps);
  out->set_backing_path(s.backing_path);
}

void ToProto(const Tenant& t, const TenantUsage& u, v1::TenantInfo* out) {
  out->set_name(t.name);
  for (const auto& r : RoleNames(t.roles)) out->add_roles(r);
  out->mutable_limits()->set_max_bytes(t.limits.max_bytes);
  out->mutable_limits()->set_max_leases(t.limits.max_leases);
  out->set_bytes(u.bytes);
  out->set_leases(u.leases);
}

absl::Status CheckRequestId(const std::string& id) {
  if (id.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id is ", id.size(), " bytes; at most 128"));
  }
  for (char c : id) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          "request_id must be printable ASCII without spaces (a UUID, say)");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLeaseId(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("lease_id is required");
  if (id.size() > 128)
    return absl::InvalidArgumentError("lease_id is too long");
  return absl::OkStatus();
}

// Clips [*low, *high) to the DMA limit of `device`.
absl::Status ApplyDeviceLimit(const SourceFacts& source,
                              const std::string& device, uint64_t* low,
                              uint64_t* high) {
  for (const vfio::VfioDevice& d : source.devices) {
    if (d.bdf != device) continue;
    if (d.dma_limit == 0) return absl::OkStatus();
    if (*low >= d.dma_limit) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the window starts at ", *low, ", above the DMA limit ", d.dma_limit,
          " of device ", device, ": it could not reach the region"));
    }
    *high = std::min(*high, d.dma_limit);
    return absl::OkStatus();
  }
  std::string known;
  for (const auto& d : source.devices) absl::StrAppend(&known, " ", d.bdf);
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown device \"", device.substr(0, 64), "\" (the ", source.name,
      " source drives:", known.empty() ? " none" : known, ")"));
}

absl::StatusOr<AllocateParams> ToParams(const v1::AllocateRequest& r,
                                        absl::Duration max_ttl,
                                        const SourceFacts& source) {
  AllocateParams p;
  if (r.bytes() == 0) return absl::InvalidArgumentError("bytes must be > 0");
  p.req.bytes = r.bytes();
  p.req.low = r.low();
  p.req.high = r.high() == 0 ? pglist::kMaxIova : r.high();
  if (!r.device().empty()) {
    RETURN_IF_ERROR(
        ApplyDeviceLimit(source, r.device(), &p.req.low, &p.req.high));
    p.device = r.device();
  }
  p.req.alignment = r.alignment();
  p.req.boundary = r.boundary();
  p.req.max_segments = r.max_segments();
  p.req.preemptible = r.preemptible();
  if (r.has_numa_node()) {
    if (r.numa_node() < 0)
      return absl::InvalidArgumentError("numa_node must be >= 0");
    p.req.numa = r.numa_node();
  } else if (r.numa_strict()) {
    return absl::InvalidArgumentError("numa_strict needs numa_node");
  }
  p.numa_strict = r.numa_strict();
  p.may_wait = r.may_wait();
  p.may_reclaim = r.may_reclaim();
  if (absl::Seconds(r.ttl_seconds()) > max_ttl) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ttl_seconds ", r.ttl_seconds(), " is above the maximum of ",
        absl::ToInt64Seconds(max_ttl)));
  }
  p.ttl = absl::Seconds(r.ttl_seconds());
  if (r.label().size() > 256)
    return absl::InvalidArgumentError("label is longer than 256 bytes");
  p.label = r.label();
  RETURN_IF_ERROR(CheckRequestId(r.request_id()));
  p.request_id = r.request_id();
  const std::string& sha = r.access_token_sha256();
  if (!sha.empty() && !IsSha256Hex(sha)) {
    return absl::InvalidArgumentError(
        "access_token_sha256 must be 64 lowercase hex digits (the SHA-256 "
        "of a random token of at least 128 bits)");
  }
  p.access_sha256 = sha;
  return p;
}

// Allocate may wait: the reactor cancels the wait if the client goes away,
// and releases a lease granted to a caller that is gone (unless the request
// has an id: then the caller's retry gets it).
class AllocateReactor final : public ServerUnaryReactor {
 public:
  AllocateReactor(PoolManager* m, CallbackServerContext* ctx)
      : manager_(m), ctx_(ctx), state_(std::make_shared<State>()) {}

  void Start(const Tenant& tenant, AllocateParams params, absl::Time deadline,
             v1::AllocateResponse* resp) {
    const bool has_id = !params.request_id.empty();
    const uint64_t handle = manager_->Allocate(
        tenant, std::move(params), deadline,
        [this, resp, tenant, has_id](absl::StatusOr<LeaseInfo> r) {
          if (r.ok() && !has_id && ctx_->IsCancelled()) {
            manager_->Release(tenant, r->id, [](absl::StatusOr<bool>) {});
            Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                                "the caller went away; the lease granted "
                                "meanwhile was released"));
            return;
          }
          if (r.ok()) ToProto(*r, resp->mutable_lease());
          Finish(ToGrpc(r.status()));  // the last use of `this`
        });
    bool cancelled;
    {
      absl::MutexLock l(&state_->mu);
      state_->handle = handle;
      cancelled = state_->cancelled;
    }
    if (cancelled && handle != 0) manager_->CancelWait(handle);
  }
  void OnCancel() override {
    uint64_t handle;
    {
      absl::MutexLock l(&state_->mu);
      state_->cancelled = true;
      handle = state_->handle;
    }
    if (handle != 0) manager_->CancelWait(handle);
  }
  void OnDone() override { delete this; }

 private:
  struct State {
    absl::Mutex mu;
    uint64_t handle = 0;
    bool cancelled = false;
  };
  PoolManager* manager_;
  CallbackServerContext* ctx_;
  std::shared_ptr<State> state_;
};

v1::LeaseEvent ToProto(const LeaseEventInfo& e) {
  v1::LeaseEvent out;
  out.set_kind(static_cast<v1::LeaseEvent::Kind>(e.kind));
  out.set_lease_id(e.lease_id);
  out.set_reason(e.reason);
  out.set_unix_ms(UnixMillis(e.at));
  if (e.deadline != absl::InfinitePast())
    out.set_deadline_unix_ms(UnixMillis(e.deadline));
  return out;
}

// Streams the tenant's lease events until the client cancels, the daemon
// shuts down, or the reader falls `max_queue` events behind (a final
// OVERFLOW event, then RESOURCE_EXHAUSTED).
class WatchReactor final : public grpc::ServerWriteReactor<v1::LeaseEvent> {
 public:
  WatchReactor(PoolManager* m, const std::string& tenant, size_t max_queue)
      : manager_(m), max_queue_(max_queue), link_(std::make_shared<Link>()) {
    link_->reactor = this;
    auto sub = manager_->Subscribe(
        tenant,
        [link = link_](const LeaseEventInfo& e) {
          absl::MutexLock l(&link->mu);
          if (link->reactor != nullptr) link->reactor->Push(ToProto(e));
        },
        [link = link_](const absl::Status& s) {
          absl::MutexLock l(&link->mu);
          if (link->reactor != nullptr) link->reactor->End(ToGrpc(s));
        });
    if (!sub.ok()) {
      End(ToGrpc(sub.status()));
      return;
    }
    sub_ = *sub;
    StartSendInitialMetadata();  // the subscription is live from here on
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    queue_.pop_front();
    writing_ = false;
    if (pending_finish_) {  // ended while this write was in flight
      Finish(*pending_finish_);
      pending_finish_.reset();
      return;
    }
    if (!ok || finished_) return;
    if (!queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
    } else if (overflowed_) {
      finished_ = true;
      Finish(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("watch.max_queued_events: the reader fell ", max_queue_,
                       " events behind; list the leases and "
                       "watch again")));
    }
  }
  void OnCancel() override { End(grpc::Status::CANCELLED); }
  void OnDone() override {
    {
      absl::MutexLock l(&link_->mu);
      link_->reactor = nullptr;
    }
    if (sub_ != 0) manager_->Unsubscribe(sub_);
    delete this;
  }

 private:
  // Lets the manager's callbacks reach the reactor until it is done.
  struct Link {
    absl::Mutex mu;
    WatchReactor* reactor = nullptr;
  };
  void End(const grpc::Status& s) {
    absl::MutexLock l(&mu_);
    if (finished_) return;
    finished_ = true;
    if (writing_) {
      pending_finish_ = s;
    } else {
      Finish(s);
    }
  }
  void Push(v1::LeaseEvent e) {
    absl::MutexLock l(&mu_);
    if (finished_ || overflowed_) return;
    if (queue_.size() >= max_queue_) {
      overflowed_ = true;
      e.Clear();
      e.set_kind(v1::LeaseEvent::OVERFLOW);
      e.set_reason(absl::StrCat("the reader fell ", max_queue_,
                                " events behind (watch.max_queued_events); "
                                "events were dropped and the stream ends"));
      e.set_unix_ms(absl::ToUnixMillis(absl::Now()));
    }
    queue_.push_back(std::move(e));
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

  PoolManager* manager_;
  const size_t max_queue_;
  std::shared_ptr<Link> link_;
  uint64_t sub_ = 0;
  absl::Mutex mu_;
  std::deque<v1::LeaseEvent> queue_;  // front: being written
  bool writing_ = false;
  bool finished_ = false;
  bool overflowed_ = false;
  std::optional<grpc::Status> pending_finish_;
};

}  // namespace

size_t LeaseAnswerBound(uint32_t runs, size_t max_path) {
  // A run: iova, length, backing_offset, view_offset (a tag and up to ten
  // bytes each), segment_id (1 + 5), the path (a tag, its length, the
  // bytes), and the run's own tag and length (1 + 3).
  const size_t per_run = 4 * 11 + 6 + (1 + 3 + max_path) + 4;
  // The rest of a lease at its largest (id, tenant name and request id of
  // at most 128 bytes, a label of 256, the path, numbers, the listed
  // holders), the lease's tag and length in the answer, and a page token.
  const size_t holder = 2 * 11 + (2 + 16) + 4 + 3;
  const size_t rest = 3 * (3 + 128) + (3 + 256) + 16 + 5 * 11 +
                      kMaxHoldersShown * holder + 3 * 11 + 8 + 1024;
  return rest + static_cast<size_t>(runs) * per_run;
}

uint32_t MaxRunsPerAnswer(size_t max_path) {
  const size_t per_run =
      LeaseAnswerBound(1, max_path) - LeaseAnswerBound(0, max_path);
  return static_cast<uint32_t>(
      (kMaxAnswerBytes - LeaseAnswerBound(0, max_path)) / per_run);
}

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

Tenant Authenticator::Implicit() { return ImplicitTenant(); }

absl::StatusOr<Tenant> Authenticator::IdentifyToken(
    absl::string_view token) const {
  if (token.empty()) {
    if (implicit_) return Implicit();
    return absl::UnauthenticatedError("no credentials: send a token");
  }
  if (auto t = tenants_->ByToken(token)) return *t;
  if (access_) {
    // A lease access token: the owning tenant's name and the tenant role,
    // scoped to the leases granted with it.
    const std::string sha = Sha256Hex(token);
    if (std::optional<std::string> owner = access_(sha)) {
      Tenant t;
      t.name = *owner;
      t.roles = kRoleTenant;
      t.lease_scope = sha;
      return t;
    }
  }
  return absl::UnauthenticatedError("unknown bearer token");
}

absl::StatusOr<Tenant> Authenticator::Identify(
    const grpc::ServerContextBase& ctx) const {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it != md.end()) {
    const absl::string_view v(it->second.data(), it->second.size());
    if (!absl::StartsWithIgnoreCase(v, "bearer ")) {
      return absl::UnauthenticatedError(
          "authorization must be \"Bearer <token>\"");
    }
    return IdentifyToken(v.substr(7));
  }
  if (auto auth = ctx.auth_context(); auth && auth->IsPeerAuthenticated()) {
    for (const auto& cn : auth->FindPropertyValues("x509_common_name")) {
      if (auto t = tenants_->ByCommonName(std::string(cn.data(), cn.size())))
        return *t;
    }
    return absl::UnauthenticatedError("the client certificate names no tenant");
  }
  // The implicit tenant is whoever may open the unix socket (its mode and
  // group are the operator's: listen.unix_mode, listen.unix_group); over
  // TCP anyone on the host could connect, so TCP always needs credentials.
  if (implicit_ && absl::StartsWith(ctx.peer(), "unix:")) return Implicit();
  if (implicit_) {
    return absl::UnauthenticatedError(
        "no credentials: the implicit tenant answers on the unix socket only; "
        "over TCP send \"authorization: Bearer <token>\" or a client "
        "certificate (docs/security.md)");
  }
  return absl::UnauthenticatedError(
      "no credentials: send \"authorization: Bearer <token>\"");
}

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

// Answers a unary call from a callback, on whatever thread runs it.
ServerUnaryReactor* Later(CallbackServerContext* ctx,
                          std::function<void(ServerUnaryReactor*)> start) {
  ServerUnaryReactor* r = ctx->DefaultReactor();
  start(r);
  return r;
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

// One page of leases in id order (of `tenant`, or all).
absl::Status LeasePage(PoolManager* manager, absl::string_view list,
                       std::optional<std::string> tenant, int32_t page_size,
                       const std::string& token, View view,
                       v1::ListLeasesResponse* resp) {
  ASSIGN_OR_RETURN(const size_t n, PageSize(page_size, kDefaultPage, kMaxPage));
  const std::string filter = tenant.value_or("");
  std::string after;
  if (!token.empty()) {
    ASSIGN_OR_RETURN(after, DecodePageToken(token, list, filter));
  }
  std::vector<LeaseInfo> leases = manager->Leases(tenant, after, n + 1);
  size_t bytes = 0;
  for (size_t i = 0; i < leases.size(); ++i) {
    v1::Lease one;
    ToProto(leases[i], &one, view);
    bytes += one.ByteSizeLong() + 8;
    if (i == n || (i > 0 && bytes > kPageBytes)) {
      resp->set_next_page_token(
          EncodePageToken(list, filter, leases[i - 1].id));
      break;
    }
    *resp->add_leases() = std::move(one);
  }
  return absl::OkStatus();
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
