// SPDX-License-Identifier: Apache-2.0
// The reactor of one Allocate call (gRPC's callback API): the request may
// wait, so the reactor cancels the wait if the client goes away, and
// releases a lease granted to a caller that is gone (unless the request has
// an id: then the caller's retry gets it). Deletes itself when done.
//
// State: the wait's handle and whether the call was cancelled (under a
// mutex of its own).
// Thread safety: thread-safe; gRPC calls OnCancel and OnDone on its
// threads, and the completion runs on whichever thread answers, without
// the pool's lock.
// I/O: none of its own (gRPC sends the answer).
// REQUIRES: `m` outlives it; Start once, right after construction, by the
// handler that returns it.
#ifndef PHYSPOOL_SERVER_RPC_ALLOCATE_REACTOR_H_
#define PHYSPOOL_SERVER_RPC_ALLOCATE_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "physpool/v1/physpool.grpc.pb.h"
#include "server/pool_manager.h"
#include "server/rpc/convert.h"

namespace physpool::server {

class AllocateReactor final : public grpc::ServerUnaryReactor {
 public:
  AllocateReactor(PoolManager* m, grpc::CallbackServerContext* ctx)
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
  grpc::CallbackServerContext* ctx_;
  std::shared_ptr<State> state_;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_RPC_ALLOCATE_REACTOR_H_
