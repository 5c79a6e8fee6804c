// SPDX-License-Identifier: Apache-2.0
// watch (your lease events until interrupted or --timeout) and health.
#include <pthread.h>
#include <signal.h>

#include <thread>

#include "cli/commands.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace physpool::cli {
namespace {

int Watch(const Ctx& c) {
  sigset_t stop;  // blocked since before the channel (waits_for_signal)
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  grpc::ClientContext ctx;
  if (!c.token.empty()) ctx.AddMetadata("authorization", "Bearer " + c.token);
  if (c.timeout_given)
    ctx.set_deadline(std::chrono::system_clock::now() + c.timeout);
  std::thread stopper([&] {
    int sig;
    sigwait(&stop, &sig);
    ctx.TryCancel();
  });
  auto reader = c.Pool()->Watch(&ctx, {});
  // The daemon sends the stream's initial metadata once the subscription
  // is live: from the header line on, no event is missed.
  reader->WaitForInitialMetadata();
  c.out->EventsStart();
  v1::LeaseEvent e;
  while (reader->Read(&e)) c.out->Event(e);
  const grpc::Status s = reader->Finish();
  pthread_kill(stopper.native_handle(), SIGTERM);
  stopper.join();
  if (s.error_code() == grpc::StatusCode::CANCELLED ||
      (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
       c.timeout_given)) {
    return 0;  // interrupted, or --timeout elapsed: a normal end
  }
  return s.ok() ? 0 : Fail(s);
}

int Health(const Ctx& c) {
  auto stub = grpc::health::v1::Health::NewStub(c.channel);
  grpc::health::v1::HealthCheckResponse resp;
  auto ctx = c.Call();
  if (auto s = stub->Check(ctx.get(), {}, &resp); !s.ok()) return Fail(s);
  c.out->Health(resp);
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? 0
             : kExitFailed;
}

}  // namespace

void AddWatchCommands(CLI::App* root, Commands* out) {
  CLI::App* watch = Leaf(
      root, "watch", "physpoolctl watch [--timeout 60s]",
      "Streams your lease events (EXPIRING, EXPIRED, REVOKED, PREEMPTED) "
      "until interrupted (or until --timeout, if given). -o json prints one "
      "object a line, -o yaml one document each.",
      "physpoolctl watch -o json");
  out->push_back({watch, Watch, [] { return true; }});
  CLI::App* health = Leaf(root, "health", "physpoolctl health",
                          "SERVING (exit 0) or NOT_SERVING (exit 1).",
                          "physpoolctl --endpoint 127.0.0.1:7600 health");
  out->push_back({health, Health});
}

}  // namespace physpool::cli
