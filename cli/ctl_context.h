// SPDX-License-Identifier: Apache-2.0
// What every daemon command of physpoolctl shares: the connection and
// credentials from the global flags, the printer -o chose, the exit code of
// each error class (docs/cli.md), and reading a paged list to its end.
//
// State: Ctx holds the channel and the printer for one invocation.
// Thread safety: Ctx is read-only once built; its stubs are thread-safe.
// I/O: Fail writes the error to stderr; FollowPages makes one RPC a page.
// REQUIRES: a Ctx is built by Connect (ctl.cc) before a command runs.
#ifndef PHYSPOOL_CLI_CTL_CONTEXT_H_
#define PHYSPOOL_CLI_CTL_CONTEXT_H_

#include <chrono>
#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "cli/printer.h"
#include "client/connection.h"
#include "grpcpp/grpcpp.h"
#include "physpool/client.h"
#include "physpool/v1/physpool.grpc.pb.h"

namespace physpool::cli {

// Exit codes (docs/cli.md): 0 ok, 1 failed, 2 usage, 3-7 by gRPC status.
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
int ExitCodeFor(grpc::StatusCode c);

// Writes "Error: CODE: message" to stderr; returns the code's exit code.
int Fail(const grpc::Status& s);
int Fail(const absl::Status& s);

struct Ctx {
  ClientOptions opts;  // endpoint, credentials, timeout: the global flags
  std::string token;   // resolved (flag, file or environment)
  std::shared_ptr<grpc::Channel> channel;
  std::chrono::milliseconds timeout{10000};  // per call (--timeout)
  bool timeout_given = false;
  std::unique_ptr<Printer> out;  // -o

  std::unique_ptr<grpc::ClientContext> Call() const {
    return client_internal::NewContext(token, timeout);
  }
  std::unique_ptr<v1::Pool::Stub> Pool() const {
    return v1::Pool::NewStub(channel);
  }
  std::unique_ptr<v1::Admin::Stub> Admin() const {
    return v1::Admin::NewStub(channel);
  }
};

// Reads a paged list (AIP-158) to its end: asks for page after page
// (`page_size` items each, 0 = the daemon's default), each with its own
// deadline, passing each answer's next_page_token as the next page_token
// until it is "", and hands every page to `merge`. A daemon that hands out
// a token it gave before would never end: INTERNAL.
template <typename Resp, typename Req, typename Call, typename Merge>
grpc::Status FollowPages(const Ctx& c, int32_t page_size, Req req, Call call,
                         Merge merge) {
  req.set_page_size(page_size);
  std::set<std::string> seen;
  for (;;) {
    Resp page;
    auto ctx = c.Call();
    if (grpc::Status s = call(ctx.get(), req, &page); !s.ok()) return s;
    std::string next = page.next_page_token();
    merge(std::move(page));
    if (next.empty()) return grpc::Status::OK;
    if (!seen.insert(next).second) {
      return grpc::Status(
          grpc::StatusCode::INTERNAL,
          "the daemon answered page token \"" + next + "\" a second time");
    }
    req.set_page_token(std::move(next));
  }
}

// All pages of a list whose items are one repeated field: protobuf's
// MergeFrom appends them. The result has no next_page_token.
template <typename Resp, typename Req, typename Call>
grpc::Status ListAll(const Ctx& c, int32_t page_size, Req req, Call call,
                     Resp* all) {
  all->Clear();
  grpc::Status s =
      FollowPages<Resp>(c, page_size, std::move(req), call,
                        [all](Resp page) { all->MergeFrom(page); });
  all->clear_next_page_token();
  return s;
}

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_CTL_CONTEXT_H_
