// SPDX-License-Identifier: Apache-2.0
// The reactor of one Watch stream (gRPC's callback API): the tenant's
// lease events, queued per stream, until the client cancels, the daemon
// shuts down or the tenant is removed, or the reader falls `max_queue`
// events behind (a final OVERFLOW event, then RESOURCE_EXHAUSTED). Deletes
// itself when done.
//
// State: the events queued (the front one being written), whether it has
// finished or overflowed, its subscription.
// Thread safety: thread-safe (its own mutex). Events arrive in the pool's
// turns, under the pool's lock (taken before the reactor's); the close
// after a turn; OnWriteDone, OnCancel and OnDone on gRPC's threads.
// I/O: StartWrite on its stream (gRPC's, asynchronous: it does not block),
// also from an event under the pool's lock.
// REQUIRES: `m` outlives it.
#ifndef PHYSPOOL_SERVER_RPC_WATCH_REACTOR_H_
#define PHYSPOOL_SERVER_RPC_WATCH_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "physpool/v1/physpool.grpc.pb.h"
#include "server/pool_manager.h"
#include "server/rpc/convert.h"

namespace physpool::server {

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

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_RPC_WATCH_REACTOR_H_
