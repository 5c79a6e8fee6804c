// SPDX-License-Identifier: Apache-2.0
#include "physpool/client.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/connection.h"
#include "client/fd_socket.h"
#include "physpool/v1/physpool.grpc.pb.h"

namespace physpool {

using client_internal::FromGrpc;
using client_internal::NewContext;

namespace {

// A request id: 128 bits from the kernel's CSPRNG as 32 lowercase hex
// digits. INTERNAL if getrandom fails (it blocks only until the kernel's
// pool is initialised, early at boot).
absl::StatusOr<std::string> NewRequestId() {
  char bytes[16];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::InternalError(
          absl::StrCat("getrandom for a request id: ", std::strerror(errno)));
    }
    got += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(absl::string_view(bytes, sizeof(bytes)));
}

// The pause before attempt `failed` + 1, before jitter.
absl::Duration BackoffCap(const ClientOptions& o, int failed) {
  absl::Duration d = absl::FromChrono(o.retry_backoff);
  const absl::Duration cap = absl::FromChrono(o.max_retry_backoff);
  for (int i = 1; i < failed && d < cap; ++i) d *= 2;
  return std::min(d, cap);
}

bool Retryable(grpc::StatusCode code, bool waiting) {
  // A waiting request's deadline is its wait's: DEADLINE_EXCEEDED means
  // the wait ran out, and a retry would start it over.
  return code == grpc::StatusCode::UNAVAILABLE ||
         (code == grpc::StatusCode::DEADLINE_EXCEEDED && !waiting);
}

}  // namespace

// What the client's threads know about a live region.
struct Region::Shared {
  std::shared_ptr<Client::Impl> impl;
  std::string lease_id;
  RevokedCallback on_revoked;
  absl::Duration ttl;
  absl::Time next_renew;
  bool revoked = false;   // guarded by impl->mu
  bool released = false;  // guarded by impl->mu
  bool attached = false;  // Client::Attach: the owner renews and releases
};

struct Client::Impl {
  ClientOptions opts;
  std::string token;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Pool::Stub> stub;
  std::string tenant;
  uint64_t page_size = 0;
  std::string fd_socket;
  std::string source;
  std::vector<IovaRange> iova_ranges;
  std::vector<DeviceInfo> devices;
  bool lease_scoped = false;  // a lease access token: no Watch, no Allocate

  absl::Mutex mu;
  absl::CondVar cv;
  std::map<std::string, std::shared_ptr<Region::Shared>> live
      ABSL_GUARDED_BY(mu);
  bool stopping ABSL_GUARDED_BY(mu) = false;
  // Jitter of Allocate's retry pauses; absl::BitGen is thread-compatible,
  // hence its own mutex.
  absl::Mutex bitgen_mu;
  absl::BitGen bitgen ABSL_GUARDED_BY(bitgen_mu);
  grpc::ClientContext* watch_ctx ABSL_GUARDED_BY(mu) = nullptr;
  // The first Watch stream's subscription is live (its initial metadata
  // arrived) or that stream ended: Connect waits for it.
  bool watch_started ABSL_GUARDED_BY(mu) = false;
  std::thread renewer, watcher;

  // Marks a region taken back and runs its callback (without mu).
  void TakeBack(const std::string& id, const std::string& kind,
                const std::string& reason, int64_t deadline) {
    std::shared_ptr<Region::Shared> r;
    {
      absl::MutexLock l(&mu);
      auto it = live.find(id);
      if (it == live.end()) return;
      r = it->second;
      live.erase(it);
      r->revoked = true;
    }
    if (r->on_revoked) r->on_revoked(id, kind, reason, deadline);
  }

  void RenewLoop() {
    absl::MutexLock l(&mu);
    while (!stopping) {
      absl::Time next = absl::Now() + absl::Seconds(1);
      std::vector<std::shared_ptr<Region::Shared>> due;
      for (auto& [id, r] : live) {
        if (r->next_renew <= absl::Now()) due.push_back(r);
        next = std::min(next, r->next_renew);
      }
      if (due.empty()) {
        cv.WaitWithDeadline(&mu, next);
        continue;
      }
      mu.Unlock();
      for (auto& r : due) {
        v1::RenewRequest req;
        req.set_lease_id(r->lease_id);
        v1::RenewResponse resp;
        auto ctx = NewContext(token, opts.timeout);
        const grpc::Status s = stub->Renew(ctx.get(), req, &resp);
        if (s.error_code() == grpc::StatusCode::NOT_FOUND ||
            s.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
          TakeBack(r->lease_id, "lost", s.error_message(), 0);
        }
        absl::MutexLock relock(&mu);
        // On a transient error, retry sooner.
        r->next_renew = absl::Now() + (s.ok() ? r->ttl / 3 : absl::Seconds(1));
      }
      mu.Lock();
    }
  }

  // Takes back, as "lost", each of `ids` that the daemon no longer lists
  // for this tenant (every page): their events were missed. False if the
  // daemon could not be asked.
  bool Reconcile(const std::vector<std::string>& ids, const std::string& why) {
    if (ids.empty()) return true;
    std::set<std::string> listed;
    v1::ListLeasesRequest req;
    for (;;) {
      v1::ListLeasesResponse resp;
      auto ctx = NewContext(token, opts.timeout);
      if (!stub->ListLeases(ctx.get(), req, &resp).ok()) return false;
      for (const v1::Lease& l : resp.leases()) listed.insert(l.id());
      if (resp.next_page_token().empty()) break;
      if (resp.next_page_token() == req.page_token()) return false;
      req.set_page_token(resp.next_page_token());
    }
    for (const std::string& id : ids) {
      if (listed.count(id) == 0) {
        TakeBack(id, "lost",
                 "the daemon no longer has the lease (its event was missed: " +
                     why + ")",
                 0);
      }
    }
    return true;
  }

  void WatchLoop() {
    absl::Duration backoff = absl::Milliseconds(100);
    // Why events may have been missed since the last live subscription
    // ("" = none): the stream ended (daemon restart) or OVERFLOWed.
    std::string missed;
    for (;;) {
      grpc::ClientContext ctx;
      if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
      {
        absl::MutexLock l(&mu);
        if (stopping) return;
        watch_ctx = &ctx;
      }
      auto reader = stub->Watch(&ctx, v1::WatchRequest());
      // The daemon sends the initial metadata once the subscription is
      // live: events of regions allocated from now on reach us.
      reader->WaitForInitialMetadata();
      std::vector<std::string> ids;  // the regions live before it was
      {
        absl::MutexLock l(&mu);
        watch_started = true;
        cv.SignalAll();
        for (const auto& [id, r] : live) ids.push_back(id);
      }
      // Regions that ended while no stream was live: the daemon's list
      // says which (events from here on come by the stream).
      if (!missed.empty() && Reconcile(ids, missed)) missed.clear();
      v1::LeaseEvent e;
      while (reader->Read(&e)) {
        backoff = absl::Milliseconds(100);
        if (e.kind() == v1::LeaseEvent::EXPIRING) continue;
        if (e.kind() == v1::LeaseEvent::OVERFLOW) {
          // Events were dropped; the stream ends after this one.
          missed = "the watch stream overflowed";
          continue;
        }
        std::string kind = v1::LeaseEvent::Kind_Name(e.kind());
        for (char& c : kind) c = static_cast<char>(std::tolower(c));
        TakeBack(e.lease_id(), kind, e.reason(), e.deadline_unix_ms());
      }
      reader->Finish();
      if (missed.empty()) missed = "the watch stream was interrupted";
      absl::MutexLock l(&mu);
      watch_ctx = nullptr;
      if (stopping) return;
      cv.WaitWithTimeout(&mu, backoff);  // the daemon restarts: reconnect
      backoff = std::min(backoff * 2, absl::Seconds(5));
    }
  }

  // One logical Allocate: attempts with req's request id until one
  // answers, an error is not retryable, or the attempts or the time run
  // out (Client::Allocate).
  absl::Status AllocateWithRetries(const v1::AllocateRequest& req,
                                   absl::Duration wait,
                                   v1::AllocateResponse* resp) {
    const bool waiting = req.may_wait();
    const absl::Duration timeout = absl::FromChrono(opts.timeout);
    const absl::Duration per_attempt = waiting ? wait + timeout : timeout;
    const int attempts = std::clamp(opts.allocate_attempts, 1, 100);
    absl::Duration pauses;
    for (int n = 1; n < attempts; ++n) pauses += BackoffCap(opts, n);
    const absl::Time start = absl::Now();
    const absl::Time end =
        start + (waiting ? per_attempt : per_attempt * attempts) + pauses;
    grpc::Status s;
    int attempt = 0;
    for (;;) {
      ++attempt;
      grpc::ClientContext ctx;
      if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
      ctx.set_deadline(
          absl::ToChronoTime(std::min(absl::Now() + per_attempt, end)));
      // A retry waits for the channel to reconnect (within its deadline)
      // instead of failing at once while gRPC backs off between attempts.
      ctx.set_wait_for_ready(attempt > 1);
      resp->Clear();
      s = stub->Allocate(&ctx, req, resp);
      if (s.ok()) return absl::OkStatus();
      if (!Retryable(s.error_code(), waiting) || attempt >= attempts) break;
      double jitter;
      {
        absl::MutexLock l(&bitgen_mu);
        jitter = absl::Uniform(bitgen, 0.5, 1.0);
      }
      const absl::Duration pause = BackoffCap(opts, attempt) * jitter;
      if (absl::Now() + pause >= end) break;  // no time left for another
      if (opts.on_allocate_retry) {
        opts.on_allocate_retry({attempt, FromGrpc(s),
                                absl::ToChronoMilliseconds(pause),
                                req.request_id()});
      }
      absl::SleepFor(pause);
    }
    const absl::Status last = FromGrpc(s);
    if (attempt == 1 && !Retryable(s.error_code(), waiting)) return last;
    return absl::Status(
        last.code(),
        absl::StrCat(last.message(), " (Allocate request_id ", req.request_id(),
                     ": ", attempt, attempt == 1 ? " attempt" : " attempts",
                     " in ",
                     absl::FormatDuration(absl::Trunc(absl::Now() - start,
                                                      absl::Milliseconds(1))),
                     ")"));
  }

  // Maps every run of `lease` (its descriptors from the fd socket) into
  // `runs`; on an error `runs` holds what was mapped.
  absl::Status MapRuns(const v1::Lease& lease, std::vector<Region::Run>* out) {
    std::vector<Region::Run>& runs = *out;
    absl::Status mapped;
    // The lease's memory comes as descriptors over the fd socket: with
    // per-lease isolation one view mapping the runs back to back, else the
    // segments' backing; "ok <n> <fd>:<offset> ..." says where each run is.
    client_internal::FdAnswer backing;
    {
      auto answer = client_internal::FdRequest(
          fd_socket, absl::StrCat("backing ", lease.id(), " ", token),
          absl::FromChrono(opts.timeout));
      if (!answer.ok()) {
        mapped = answer.status();
      } else if (answer->words.size() !=
                 static_cast<size_t>(lease.runs_size()) + 1) {
        mapped =
            absl::InternalError("fd socket: one fd:offset per run expected");
      }
      if (answer.ok()) backing = *std::move(answer);
    }
    for (int i = 0; mapped.ok() && i < lease.runs_size(); ++i) {
      const v1::Run& r = lease.runs(i);
      // The descriptors are borrowed (closed below, once).
      int fd = -1;
      uint64_t offset = 0;
      size_t index = 0;
      std::pair<std::string, std::string> where =
          absl::StrSplit(backing.words[i + 1], absl::MaxSplits(':', 1));
      if (absl::SimpleAtoi(where.first, &index) &&
          absl::SimpleAtoi(where.second, &offset) &&
          index < backing.fds.size()) {
        fd = backing.fds[index];
      }
      void* p = fd < 0 ? MAP_FAILED
                       : mmap(nullptr, r.length(), PROT_READ | PROT_WRITE,
                              MAP_SHARED, fd, static_cast<off_t>(offset));
      const int err = fd < 0 ? EINVAL : errno;
      if (p == MAP_FAILED) {
        mapped = absl::PermissionDeniedError(
            absl::StrCat("cannot map run ", i, " of lease ", lease.id(), " (\"",
                         backing.words[i + 1], "\"): ", std::strerror(err)));
        break;
      }
      runs.push_back({r.iova(), r.length(), p});
    }
    for (int fd : backing.fds) close(fd);
    return mapped;
  }

  void Stop() {
    {
      absl::MutexLock l(&mu);
      if (stopping) return;
      stopping = true;
      if (watch_ctx != nullptr) watch_ctx->TryCancel();
      cv.SignalAll();
    }
    if (renewer.joinable()) renewer.join();
    if (watcher.joinable()) watcher.join();
  }
};

Client::Client(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() { impl_->Stop(); }

const std::string& Client::tenant() const { return impl_->tenant; }
uint64_t Client::page_size() const { return impl_->page_size; }
const std::vector<DeviceInfo>& Client::devices() const {
  return impl_->devices;
}
const std::string& Client::source() const { return impl_->source; }
const std::vector<IovaRange>& Client::iova_ranges() const {
  return impl_->iova_ranges;
}

absl::StatusOr<std::vector<std::pair<uint64_t, uint64_t>>> Client::LeaseRuns(
    const std::string& lease_id) {
  v1::GetLeaseRequest req;
  req.set_lease_id(lease_id);
  v1::GetLeaseResponse resp;
  auto ctx = NewContext(impl_->token, impl_->opts.timeout);
  if (grpc::Status s = impl_->stub->GetLease(ctx.get(), req, &resp); !s.ok()) {
    return FromGrpc(s);
  }
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  for (const v1::Run& r : resp.lease().runs()) {
    runs.push_back({r.iova(), r.length()});
  }
  return runs;
}

absl::StatusOr<int> Client::OpenDevice(const std::string& bdf) {
  if (bdf.empty() || bdf.find_first_of(" \n") != std::string::npos) {
    return absl::InvalidArgumentError("bad device address \"" + bdf + "\"");
  }
  auto answer = client_internal::FdRequest(
      impl_->fd_socket, absl::StrCat("device ", bdf, " ", impl_->token),
      absl::FromChrono(impl_->opts.timeout));
  if (!answer.ok()) return answer.status();
  if (answer->fds.size() != 1) {
    for (int fd : answer->fds) close(fd);
    return absl::InternalError("fd socket: expected one device fd");
  }
  return answer->fds[0];
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  auto impl = std::make_shared<Impl>();
  impl->opts = std::move(options);
  auto token = client_internal::ResolveToken(impl->opts);
  if (!token.ok()) return token.status();
  impl->token = *token;
  auto channel = client_internal::OpenChannel(impl->opts);
  if (!channel.ok()) return channel.status();
  impl->channel = *channel;
  impl->stub = v1::Pool::NewStub(impl->channel);
  v1::GetPoolInfoResponse info;
  auto ctx = NewContext(impl->token, impl->opts.timeout);
  if (grpc::Status s = impl->stub->GetPoolInfo(ctx.get(), {}, &info); !s.ok()) {
    return FromGrpc(s);
  }
  impl->tenant = info.tenant();
  impl->page_size = info.page_size();
  impl->fd_socket =
      impl->opts.fd_socket.empty() ? info.fd_socket() : impl->opts.fd_socket;
  // The daemon names its fd socket by its own path; a client that reaches
  // the daemon's directory elsewhere (a bind mount, a container) finds it
  // next to the socket it connected to.
  const std::string endpoint =
      impl->opts.endpoint.empty() ? DefaultEndpoint() : impl->opts.endpoint;
  struct stat st;
  if (impl->opts.fd_socket.empty() && endpoint.rfind("unix:", 0) == 0 &&
      stat(impl->fd_socket.c_str(), &st) != 0) {
    const std::string beside = endpoint.substr(5) + ".fds";
    if (stat(beside.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
      impl->fd_socket = beside;
  }
  impl->source = info.source();
  for (const v1::IovaRange& r : info.iova_ranges()) {
    impl->iova_ranges.push_back({r.first(), r.last()});
  }
  for (const v1::Device& d : info.devices()) {
    impl->devices.push_back({d.bdf(), d.dma_limit()});
  }
  impl->lease_scoped = info.lease_scoped();
  impl->renewer = std::thread([i = impl.get()] { i->RenewLoop(); });
  // A lease access token may not Watch (its leases' owner is told).
  if (impl->lease_scoped)
    return std::unique_ptr<Client>(new Client(std::move(impl)));
  impl->watcher = std::thread([i = impl.get()] { i->WatchLoop(); });
  {
    // So that a region allocated right after Connect is not revoked before
    // its events can reach us (bounded: without a stream, Connect still
    // succeeds; the renewals then notice a lost lease).
    absl::MutexLock l(&impl->mu);
    const absl::Time until = absl::Now() + absl::FromChrono(impl->opts.timeout);
    while (!impl->watch_started && absl::Now() < until) {
      impl->cv.WaitWithDeadline(&impl->mu, until);
    }
  }
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<Region>> Client::Allocate(
    const AllocateOptions& o, RevokedCallback on_revoked) {
  return AllocateWith(impl_, o, std::move(on_revoked));
}

absl::StatusOr<std::unique_ptr<Region>> Client::AllocateWith(
    const std::shared_ptr<Impl>& impl, const AllocateOptions& o,
    RevokedCallback on_revoked) {
  v1::AllocateRequest req;
  req.set_bytes(o.bytes);
  req.set_alignment(o.alignment);
  req.set_boundary(o.boundary);
  req.set_max_segments(o.max_segments);
  req.set_low(o.low);
  req.set_high(o.high);
  if (o.numa_node) req.set_numa_node(*o.numa_node);
  req.set_numa_strict(o.numa_strict);
  req.set_preemptible(o.preemptible);
  req.set_may_reclaim(o.may_reclaim);
  req.set_may_wait(o.wait_timeout.count() > 0);
  req.set_ttl_seconds(static_cast<uint32_t>(o.ttl.count()));
  req.set_label(o.label);
  req.set_device(o.device);
  auto request_id = NewRequestId();
  if (!request_id.ok()) return request_id.status();
  req.set_request_id(*request_id);
  v1::AllocateResponse resp;
  if (absl::Status s = impl->AllocateWithRetries(
          req, absl::FromChrono(o.wait_timeout), &resp);
      !s.ok()) {
    return s;
  }
  const v1::Lease& lease = resp.lease();
  auto shared = std::make_shared<Region::Shared>();
  shared->impl = impl;
  shared->lease_id = lease.id();
  shared->on_revoked = std::move(on_revoked);
  shared->ttl = absl::Seconds(lease.ttl_seconds());
  shared->next_renew = absl::Now() + shared->ttl / 3;
  // Map every run; on failure release the lease and unmap what was mapped.
  std::vector<Region::Run> runs;
  absl::Status mapped = impl->MapRuns(lease, &runs);
  {
    absl::MutexLock l(&impl->mu);
    impl->live[lease.id()] = shared;
    impl->cv.SignalAll();
  }
  auto region = std::unique_ptr<Region>(
      new Region(shared, lease.id(), std::move(runs), lease.bytes(),
                 lease.path(), req.request_id()));
  if (!mapped.ok()) return mapped;  // ~Region releases and unmaps
  return region;
}

absl::StatusOr<std::unique_ptr<Region>> Client::Attach(
    const std::string& lease_id) {
  std::string id = lease_id;
  if (id.empty()) {
    if (const char* e = std::getenv("PHYSPOOL_LEASE"); e != nullptr) id = e;
  }
  if (id.empty()) {
    return absl::InvalidArgumentError(
        "Attach: no lease id given and $PHYSPOOL_LEASE is not set");
  }
  v1::GetLeaseRequest req;
  req.set_lease_id(id);
  v1::GetLeaseResponse resp;
  auto ctx = NewContext(impl_->token, impl_->opts.timeout);
  if (grpc::Status s = impl_->stub->GetLease(ctx.get(), req, &resp); !s.ok())
    return FromGrpc(s);
  auto shared = std::make_shared<Region::Shared>();
  shared->impl = impl_;
  shared->lease_id = id;
  shared->attached = true;
  std::vector<Region::Run> runs;
  absl::Status mapped = impl_->MapRuns(resp.lease(), &runs);
  auto region = std::unique_ptr<Region>(
      new Region(shared, id, std::move(runs), resp.lease().bytes(),
                 resp.lease().path(), resp.lease().request_id()));
  if (!mapped.ok()) return mapped;  // ~Region unmaps
  return region;
}

Region::Region(std::shared_ptr<Shared> shared, std::string lease_id,
               std::vector<Run> runs, uint64_t bytes, std::string path,
               std::string request_id)
    : shared_(std::move(shared)),
      lease_id_(std::move(lease_id)),
      runs_(std::move(runs)),
      bytes_(bytes),
      path_(std::move(path)),
      request_id_(std::move(request_id)) {}

Region::~Region() {
  (void)Release();
  Unmap();
}

void Region::Unmap() {
  // Before the lease ends: mapped pages of an ended lease are quarantined
  // until the daemon sees them unmapped.
  for (const Run& r : runs_) munmap(r.cpu, r.bytes);
  runs_.clear();
}

bool Region::revoked() const {
  absl::MutexLock l(&shared_->impl->mu);
  return shared_->revoked;
}

void Region::Detach() {
  {
    absl::MutexLock l(&shared_->impl->mu);
    shared_->released = true;  // Release and ~Region: nothing left to do
    if (!shared_->attached) shared_->impl->live.erase(lease_id_);
  }
  Unmap();
}

absl::Status Region::Release() {
  Client::Impl* impl = shared_->impl.get();
  {
    absl::MutexLock l(&impl->mu);
    if (shared_->released || shared_->revoked) return absl::OkStatus();
    shared_->released = true;
    // An attached view is not in `live`: the entry under its id is the
    // owner's (the same Client may hold both), which must stay renewed.
    if (!shared_->attached) impl->live.erase(lease_id_);
  }
  Unmap();
  if (shared_->attached) return absl::OkStatus();  // the owner releases it
  v1::ReleaseRequest req;
  req.set_lease_id(lease_id_);
  v1::ReleaseResponse resp;
  auto ctx = NewContext(impl->token, impl->opts.timeout);
  return FromGrpc(impl->stub->Release(ctx.get(), req, &resp));
}

}  // namespace physpool
