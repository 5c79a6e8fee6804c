// SPDX-License-Identifier: Apache-2.0
// How physpool clients reach the daemon: endpoint, credentials and TLS
// resolved from options and PHYSPOOL_* environment variables. Shared by the
// client library and physpoolctl; not installed.
#ifndef PHYSPOOL_CLIENT_CONNECTION_H_
#define PHYSPOOL_CLIENT_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "physpool/client.h"

namespace physpool::client_internal {

// Message sizes every physpool client channel sets explicitly: the daemon
// answers at most 4 MiB (its lists page), requests are small.
inline constexpr int kMaxReceiveMessageBytes = 8 << 20;
inline constexpr int kMaxSendMessageBytes = 1 << 20;

// The channel arguments of every physpool client: the message sizes above,
// and reconnection within 100 ms .. 1 s (gRPC's default backs off to 2
// minutes), so that a retry finds a restarted daemon.
grpc::ChannelArguments ChannelArgs();

// A channel to options.endpoint (or the default), with TLS if configured,
// and ChannelArgs(). INVALID_ARGUMENT / NOT_FOUND for unreadable TLS files.
absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(
    const ClientOptions& options);

// The bearer token from options or the environment ("" for none).
absl::StatusOr<std::string> ResolveToken(const ClientOptions& options);

// A context with the token and options.timeout (or `timeout` if non-zero).
std::unique_ptr<grpc::ClientContext> NewContext(
    const std::string& token, std::chrono::milliseconds timeout);

absl::Status FromGrpc(const grpc::Status& s);

}  // namespace physpool::client_internal

#endif  // PHYSPOOL_CLIENT_CONNECTION_H_
