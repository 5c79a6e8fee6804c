// SPDX-License-Identifier: Apache-2.0
#include "tests/client/fake_pool.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

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
  // The fd socket: one line in, the backing file's fd out.
  f->fd_socket_ = dir + "/fake.fds";
  unlink(f->fd_socket_.c_str());
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s",
                f->fd_socket_.c_str());
  f->fd_listen_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (bind(f->fd_listen_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
          0 ||
      listen(f->fd_listen_, 8) != 0) {
    return absl::InternalError("cannot listen on " + f->fd_socket_);
  }
  f->fd_thread_ =
      std::thread([listen_fd = f->fd_listen_, backing = f->backing_] {
        for (;;) {
          const int conn = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (conn < 0) return;
          char buf[512];
          (void)!read(conn, buf, sizeof(buf));
          const int fd = open(backing.c_str(), O_RDWR | O_CLOEXEC);
          const char line[] = "ok 1 0:0\n";
          iovec iov = {const_cast<char*>(line), sizeof(line) - 1};
          char control[CMSG_SPACE(sizeof(int))] = {};
          msghdr msg = {};
          msg.msg_iov = &iov;
          msg.msg_iovlen = 1;
          msg.msg_control = control;
          msg.msg_controllen = sizeof(control);
          cmsghdr* c = CMSG_FIRSTHDR(&msg);
          c->cmsg_level = SOL_SOCKET;
          c->cmsg_type = SCM_RIGHTS;
          c->cmsg_len = CMSG_LEN(sizeof(int));
          std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
          (void)sendmsg(conn, &msg, MSG_NOSIGNAL);
          close(fd);
          close(conn);
        }
      });
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
  if (server_ != nullptr)
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  if (fd_listen_ >= 0) {
    shutdown(fd_listen_, SHUT_RDWR);  // ends accept
    if (fd_thread_.joinable()) fd_thread_.join();
    close(fd_listen_);
  }
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
  run->set_view_offset(0);
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
  resp->set_fd_socket(fd_socket_);
  return Answer(ctx, grpc::Status::OK);
}

}  // namespace physpool::testing
