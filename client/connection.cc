// SPDX-License-Identifier: Apache-2.0
#include "client/connection.h"

#include <unistd.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "util/file.h"

namespace physpool {

std::string DefaultEndpoint() {
  if (const char* e = std::getenv("PHYSPOOL_ENDPOINT"); e != nullptr && *e)
    return e;
  if (geteuid() == 0) return "unix:/run/physpool/physpool.sock";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR");
      xdg != nullptr && *xdg) {
    return absl::StrCat("unix:", xdg, "/physpool/physpool.sock");
  }
  return absl::StrCat("unix:/tmp/physpool-", geteuid(), "/physpool.sock");
}

namespace client_internal {

grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  args.SetMaxSendMessageSize(kMaxSendMessageBytes);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return args;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(
    const ClientOptions& o) {
  const std::string endpoint =
      o.endpoint.empty() ? DefaultEndpoint() : o.endpoint;
  if (absl::StartsWith(endpoint, "unix:") || o.tls_ca.empty()) {
    if (!o.tls_cert.empty() && o.tls_ca.empty()) {
      return absl::InvalidArgumentError(
          "a client certificate needs the server's CA too");
    }
    return grpc::CreateCustomChannel(
        endpoint, grpc::InsecureChannelCredentials(), ChannelArgs());
  }
  grpc::SslCredentialsOptions ssl;
  auto ca = ReadFileToString(o.tls_ca, "TLS CA");
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *ca;
  if (!o.tls_cert.empty()) {
    auto cert = ReadFileToString(o.tls_cert, "TLS certificate");
    if (!cert.ok()) return cert.status();
    auto key = ReadFileToString(o.tls_key, "TLS key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::CreateCustomChannel(endpoint, grpc::SslCredentials(ssl),
                                   ChannelArgs());
}

absl::StatusOr<std::string> ResolveToken(const ClientOptions& o) {
  std::string file = o.token_file;
  if (!o.token.empty()) return o.token;
  if (file.empty()) {
    if (const char* t = std::getenv("PHYSPOOL_TOKEN"); t != nullptr && *t)
      return std::string(t);
    if (const char* f = std::getenv("PHYSPOOL_TOKEN_FILE"); f != nullptr && *f)
      file = f;
  }
  if (file.empty()) return std::string();
  auto text = ReadFileToString(file, "token file");
  if (!text.ok()) return text.status();
  return std::string(absl::StripAsciiWhitespace(*text));
}

std::unique_ptr<grpc::ClientContext> NewContext(
    const std::string& token, std::chrono::milliseconds timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

}  // namespace client_internal
}  // namespace physpool
