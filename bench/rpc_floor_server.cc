// SPDX-License-Identifier: Apache-2.0
// The floor of issue 16's RPC benchmark: a bare gRPC C++ server with only a
// synchronous grpc.health.v1 Health service (Check answers SERVING), on a
// unix socket, in a process of its own, so that physpoold's RPCs can be
// compared with gRPC's own round trip measured in the same run.
//
//   rpc_floor_server --unix PATH [--callback]
// --callback serves Check through gRPC's callback API instead (answered
// inline, on the thread that runs the handler), as physpoold's services
// are: the two floors side by side price the API itself.
// Prints "ready" on stdout once it listens; exits on SIGTERM/SIGINT.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstdio>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"

namespace {

class Health final : public grpc::health::v1::Health::Service {
  grpc::Status Check(grpc::ServerContext*,
                     const grpc::health::v1::HealthCheckRequest*,
                     grpc::health::v1::HealthCheckResponse* resp) override {
    resp->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }
};

class CallbackHealth final : public grpc::health::v1::Health::CallbackService {
  grpc::ServerUnaryReactor* Check(
      grpc::CallbackServerContext* ctx,
      const grpc::health::v1::HealthCheckRequest*,
      grpc::health::v1::HealthCheckResponse* resp) override {
    resp->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  bool callback = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--unix" && i + 1 < argc)
      path = argv[++i];
    else if (std::string(argv[i]) == "--callback")
      callback = true;
  }
  if (path.empty()) {
    std::fprintf(stderr, "usage: %s --unix PATH [--callback]\n", argv[0]);
    return 2;
  }
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  Health health;
  CallbackHealth callback_health;
  grpc::ServerBuilder b;
  b.AddListeningPort("unix:" + path, grpc::InsecureServerCredentials());
  if (callback) {
    b.RegisterService(&callback_health);
  } else {
    b.RegisterService(&health);
  }
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "rpc_floor_server: cannot listen on %s\n",
                 path.c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&sigs, &sig);
  server->Shutdown();
  return 0;
}
