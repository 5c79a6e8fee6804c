// SPDX-License-Identifier: Apache-2.0
// A scripted physpool Pool service on a unix socket, for testing what the
// client library sends and how it retries, without a daemon: Allocate
// answers each attempt from a script and records what the attempt carried.
// The leases it grants map a small file of its own.
#ifndef PHYSPOOL_TESTS_CLIENT_FAKE_POOL_H_
#define PHYSPOOL_TESTS_CLIENT_FAKE_POOL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "physpool/v1/physpool.grpc.pb.h"

namespace physpool::testing {

class FakePool final : public v1::Pool::CallbackService {
 public:
  enum class Step {
    kOk,           // a lease of one 4 KiB run
    kUnavailable,  // UNAVAILABLE, as a daemon going away answers
    kHang,         // no answer until the client gives up (its deadline)
    kNoMemory,     // RESOURCE_EXHAUSTED "fake: no memory"
    kHugeAnswer,   // a lease whose label makes the answer `huge_bytes`
    kMemfd,        // as kOk (every lease is mapped through the fd socket)
  };
  // What one Allocate attempt carried.
  struct Attempt {
    std::string request_id;
    bool may_wait = false;
    uint64_t bytes = 0;
    absl::Duration deadline_left;  // the call's deadline, from its arrival
  };

  // Listens on `dir`/fake.sock and its fd socket `dir`/fake.fds, which
  // answers every backing request with `dir`/backing ("ok 1 0:0").
  static absl::StatusOr<std::unique_ptr<FakePool>> Start(
      const std::string& dir);
  ~FakePool() override;

  std::string endpoint() const { return "unix:" + socket_; }
  // Attempt n (from 0) gets script[n]; later ones the last step.
  void SetScript(std::vector<Step> script);
  void set_huge_bytes(size_t bytes);
  std::vector<Attempt> attempts();
  int releases();  // Release calls so far

  grpc::ServerUnaryReactor* Allocate(grpc::CallbackServerContext* ctx,
                                     const v1::AllocateRequest* req,
                                     v1::AllocateResponse* resp) override;
  grpc::ServerUnaryReactor* Renew(grpc::CallbackServerContext* ctx,
                                  const v1::RenewRequest* req,
                                  v1::RenewResponse* resp) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* ctx,
                                    const v1::ReleaseRequest* req,
                                    v1::ReleaseResponse* resp) override;
  grpc::ServerWriteReactor<v1::LeaseEvent>* Watch(
      grpc::CallbackServerContext* ctx, const v1::WatchRequest* req) override;
  grpc::ServerUnaryReactor* GetPoolInfo(grpc::CallbackServerContext* ctx,
                                        const v1::GetPoolInfoRequest* req,
                                        v1::GetPoolInfoResponse* resp) override;

 private:
  FakePool() = default;

  // Constant after Start.
  std::string socket_, backing_, fd_socket_;
  std::unique_ptr<grpc::Server> server_;
  int fd_listen_ = -1;
  std::thread fd_thread_;

  absl::Mutex mu_;
  std::vector<Step> script_ ABSL_GUARDED_BY(mu_) = {Step::kOk};
  std::vector<Attempt> attempts_ ABSL_GUARDED_BY(mu_);
  size_t huge_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int leases_ ABSL_GUARDED_BY(mu_) = 0;
  int releases_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace physpool::testing

#endif  // PHYSPOOL_TESTS_CLIENT_FAKE_POOL_H_
