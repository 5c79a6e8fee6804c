#include "tests/client/fake_pool.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace physpool::testing {
namespace {

// Answers nothing until the client cancels (its deadline passes).
class HangReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override { Finish(grpc::Status::CANCELLED); }
  void OnDone() override { delete this; }
};

// A Watch stream without events, open until the client cancels.
class QuietStream final : public grpc::ServerWriteReactor<v1::LeaseEvent> {
 public:
  QuietStream() { StartSendInitialMetadata(); }
  void OnCancel() override { Finish(grpc::Status::CANCELLED); }
  void OnDone() override { delete this; }
};

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx,
                                 grpc::Status s) {
  auto* r = ctx->DefaultReactor();
  r->Finish(std::move(s));
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FakePool>> FakePool::Start(
    const std::string& dir) {
  auto f = std::unique_ptr<FakePool>(new FakePool);
  f->socket_ = dir + "/fake.sock";
  f->backing_ = dir + "/backing";
  const int fd = open(f->backing_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ftruncate(fd, 4096) != 0) {
    if (fd >= 0) close(fd);
    return absl::InternalError("cannot create " + f->backing_);
  }
  close(fd);
  grpc::ServerBuilder b;
  b.AddListeningPort("unix:" + f->socket_, grpc::InsecureServerCredentials());
  b.RegisterService(f.get());
  f->server_ = b.BuildAndStart();
  if (f->server_ == nullptr) {
    return absl::InternalError("cannot listen on " + f->socket_);
  }
  return f;
}

FakePool::~FakePool() {
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
}

void FakePool::SetScript(std::vector<Step> script) {
  absl::MutexLock l(&mu_);
  script_ = std::move(script);
}

void FakePool::set_huge_bytes(size_t bytes) {
  absl::MutexLock l(&mu_);
  huge_bytes_ = bytes;
}

std::vector<FakePool::Attempt> FakePool::attempts() {
  absl::MutexLock l(&mu_);
  return attempts_;
}

grpc::ServerUnaryReactor* FakePool::Allocate(grpc::CallbackServerContext* ctx,
                                             const v1::AllocateRequest* req,
                                             v1::AllocateResponse* resp) {
  Step step;
  size_t huge;
  int lease;
  {
    absl::MutexLock l(&mu_);
    step = script_[std::min(attempts_.size(), script_.size() - 1)];
    attempts_.push_back({req->request_id(), req->may_wait(), req->bytes(),
                         absl::FromChrono(ctx->deadline()) - absl::Now()});
    huge = huge_bytes_;
    lease = ++leases_;
  }
  switch (step) {
    case Step::kUnavailable:
      return Answer(
          ctx, grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake: going away"));
    case Step::kHang:
      return new HangReactor;
    case Step::kNoMemory:
      return Answer(ctx, grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                      "fake: no memory"));
    case Step::kOk:
    case Step::kHugeAnswer:
    case Step::kMemfd:
      break;
  }
  v1::Lease* l = resp->mutable_lease();
  l->set_id(absl::StrCat("l-fake", lease));
  l->set_tenant("fake");
  l->set_bytes(4096);
  l->set_ttl_seconds(60);
  l->set_path("simple");
  l->set_request_id(req->request_id());
  v1::Run* run = l->add_runs();
  run->set_iova(0x100000000);
  run->set_length(4096);
  run->set_backing_path(step == Step::kMemfd ? "memfd:fake" : backing_);
  if (step == Step::kHugeAnswer) l->set_label(std::string(huge, 'x'));
  return Answer(ctx, grpc::Status::OK);
}

int FakePool::releases() {
  absl::MutexLock l(&mu_);
  return releases_;
}

grpc::ServerUnaryReactor* FakePool::Renew(grpc::CallbackServerContext* ctx,
                                          const v1::RenewRequest* req,
                                          v1::RenewResponse* resp) {
  resp->mutable_lease()->set_id(req->lease_id());
  resp->mutable_lease()->set_ttl_seconds(60);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* FakePool::Release(grpc::CallbackServerContext* ctx,
                                            const v1::ReleaseRequest*,
                                            v1::ReleaseResponse* resp) {
  {
    absl::MutexLock l(&mu_);
    ++releases_;
  }
  resp->set_released(true);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerWriteReactor<v1::LeaseEvent>* FakePool::Watch(
    grpc::CallbackServerContext*, const v1::WatchRequest*) {
  return new QuietStream;
}

grpc::ServerUnaryReactor* FakePool::GetPoolInfo(
    grpc::CallbackServerContext* ctx, const v1::GetPoolInfoRequest*,
    v1::GetPoolInfoResponse* resp) {
  resp->set_page_size(4096);
  resp->set_tenant("fake");
  resp->set_source("sim");
  return Answer(ctx, grpc::Status::OK);
}

}  // namespace physpool::testing
