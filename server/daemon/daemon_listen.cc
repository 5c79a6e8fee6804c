// SPDX-License-Identifier: Apache-2.0
// Daemon's second half: listening (gRPC on unix and TCP, the fd socket),
// publishing (metrics, the health listener, the ready file, systemd),
// serving signals, and the graceful stop. daemon.h has the contract.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/log.h"
#include "server/daemon/daemon.h"
#include "server/daemon/sockets.h"
#include "util/file.h"

namespace physpool::server {
namespace {

// listen.tcp's credentials: plaintext, or TLS (with client certificates
// required where tls.client_ca is set). Errors name the file.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TcpCredentials(
    const ServerConfig& cfg) {
  if (cfg.tls_cert.empty()) return grpc::InsecureServerCredentials();
  absl::Status read;
  grpc::SslServerCredentialsOptions opts(
      cfg.tls_client_ca.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  opts.pem_key_cert_pairs.push_back(
      {ReadFile(cfg.tls_key, "TLS key", &read),
       ReadFile(cfg.tls_cert, "TLS certificate", &read)});
  if (!cfg.tls_client_ca.empty())
    opts.pem_root_certs = ReadFile(cfg.tls_client_ca, "TLS client CA", &read);
  if (!read.ok()) return read;
  return grpc::SslServerCredentials(opts);
}

}  // namespace

int Daemon::Listen() {
  auth_ = std::make_unique<Authenticator>(
      registry_.get(), cfg_.implicit_tenant,
      [manager = manager_.get()](const std::string& sha) {
        return manager->TenantOfAccessToken(sha);
      });
  pool_service_ = std::make_unique<PoolService>(
      manager_.get(), auth_.get(), registry_.get(),
      SourceFacts{source_->name(), source_->iova_ranges(), source_->devices(),
                  cfg_.fd_socket});
  admin_service_ = std::make_unique<AdminService>(manager_.get(), auth_.get(),
                                                  registry_.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!cfg_.unix_socket.empty()) {
    if (absl::Status s = PrepareSocket(cfg_.unix_socket); !s.ok()) {
      Log(LogLevel::kError, "unix socket", {F("error", s.ToString())});
      return 1;
    }
    builder.AddListeningPort("unix:" + cfg_.unix_socket,
                             grpc::InsecureServerCredentials());
  }
  if (!cfg_.tcp.empty()) {
    auto creds = TcpCredentials(cfg_);
    if (!creds.ok()) {
      Log(LogLevel::kError, "TLS files",
          {F("error", creds.status().ToString())});
      return 1;
    }
    builder.AddListeningPort(cfg_.tcp, *creds, &tcp_port_);
  }
  builder.RegisterService(pool_service_.get());
  builder.RegisterService(admin_service_.get());
  // Requests are small; every answer is below 4 MiB (pages, run cap).
  builder.SetMaxReceiveMessageSize(1 << 20);
  builder.SetMaxSendMessageSize(kMaxAnswerBytes);
  // Sockets are made owner-only (umask) and then opened to the configured
  // mode and group: no other process can connect in between.
  std::optional<ScopedUmask> private_sockets(0177);
  server_ = builder.BuildAndStart();
  if (!server_ || (!cfg_.tcp.empty() && tcp_port_ == 0)) {
    Log(LogLevel::kError, "cannot listen",
        {F("unix", cfg_.unix_socket), F("tcp", cfg_.tcp)});
    return 1;
  }
  // After the gRPC socket: PrepareSocket has ruled out a live daemon here.
  fd_server_ =
      std::make_unique<FdServer>(source_.get(), manager_.get(), auth_.get());
  if (!cfg_.fd_socket.empty()) {
    absl::Status s = MakePrivateParentDir(cfg_.fd_socket, 0755);
    if (s.ok()) s = fd_server_->Start(cfg_.fd_socket, cfg_.fd_access);
    if (s.ok()) s = OpenSocket(cfg_.fd_socket, cfg_.unix_mode, socket_gid_);
    if (!s.ok()) {
      Log(LogLevel::kError, "fd socket", {F("error", s.ToString())});
      return 1;
    }
  }
  private_sockets.reset();
  if (!cfg_.unix_socket.empty()) {
    if (absl::Status s =
            OpenSocket(cfg_.unix_socket, cfg_.unix_mode, socket_gid_);
        !s.ok()) {
      Log(LogLevel::kError, "unix socket", {F("error", s.ToString())});
      return 1;
    }
  }
  return 0;
}

int Daemon::Publish() {
  reloader_ = std::make_unique<ConfigReloader>(
      [this] { return EffectiveConfig(flags_); }, cfg_, registry_.get(),
      manager_.get());
  // The exposer keeps a weak_ptr: the collector lives here.
  collector_ =
      std::make_shared<PoolCollector>(manager_.get(), &reloader_->counters());
  if (!cfg_.metrics.empty()) {
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(cfg_.metrics);
      exposer_->RegisterCollectable(collector_);
      metrics_port_ = exposer_->GetListeningPorts().at(0);
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "metrics endpoint",
          {F("listen", cfg_.metrics), F("error", e.what())});
      return 1;
    }
  }
  // Health only, for probes that cannot use the unix socket or credentials
  // (Kubernetes' gRPC probes): the Pool and Admin services stay off it.
  if (!flags_.health_listen.empty()) {
    grpc::ServerBuilder hb;
    hb.AddListeningPort(flags_.health_listen, grpc::InsecureServerCredentials(),
                        &health_port_);
    health_server_ = hb.BuildAndStart();
    if (!health_server_ || health_port_ == 0) {
      Log(LogLevel::kError, "cannot listen",
          {F("health_listen", flags_.health_listen)});
      return 1;
    }
  }
  // SERVING only now, with every listener up, and then while the manager
  // serves (the store writable: docs/operations.md, "The store").
  manager_->SetHealthCallback([this](bool serving) {
    SetHealth(serving);
    Log(LogLevel::kInfo, "health", {F("serving", serving ? "yes" : "no")});
  });
  Log(LogLevel::kInfo, "serving",
      {F("unix", cfg_.unix_socket), F("fd_socket", cfg_.fd_socket),
       F("tcp", cfg_.tcp.empty() ? "" : cfg_.tcp), F("tcp_port", tcp_port_),
       F("tls", !cfg_.tls_cert.empty() ? "on" : "off"),
       F("metrics", cfg_.metrics.empty() ? "" : absl::StrCat(cfg_.metrics)),
       F("metrics_port", metrics_port_),
       F("health_listen", flags_.health_listen), F("health_port", health_port_),
       F("pid", getpid())});
  if (!flags_.ready_file.empty()) {
    const std::string tmp = flags_.ready_file + ".tmp";
    std::ofstream(tmp) << "{\"unix\":\"" << cfg_.unix_socket
                       << "\",\"tcp_port\":" << tcp_port_
                       << ",\"metrics_port\":" << metrics_port_
                       << ",\"health_port\":" << health_port_
                       << ",\"pid\":" << getpid() << "}\n";
    std::rename(tmp.c_str(), flags_.ready_file.c_str());
  }
  notifier_.Ready(
      absl::StrCat("serving ", total_bytes_, " bytes from ", source_->name()));
  // Stats() takes the pool's lock: a daemon stuck holding it stops pinging.
  notifier_.StartWatchdog([manager = manager_.get()] {
    (void)manager->Stats();
    return true;
  });
  return 0;
}

void Daemon::SetHealth(bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(serving);
  if (health_server_)
    health_server_->GetHealthCheckService()->SetServingStatus(serving);
}

void Daemon::Serve() {
  int sig = 0;
  while (sigwait(&signals_, &sig) == 0 && sig == SIGHUP) {
    Log(LogLevel::kInfo, "SIGHUP: reloading the configuration",
        {F("config", embedded_ ? "(embedded default)" : flags_.config)});
    reloader_->Reload();
  }
  stop_signal_ = sig;
}

void Daemon::Stop() {
  notifier_.Stopping(absl::StrCat("stopping on ", strsignal(stop_signal_)));
  Log(LogLevel::kInfo, "shutting down", {F("signal", strsignal(stop_signal_))});
  manager_->SetHealthCallback(nullptr);
  SetHealth(false);
  // Waiters and reclaims are answered UNAVAILABLE, Watch streams end, the
  // store's queue is applied and answered: nothing in flight is dropped.
  manager_->Shutdown();
  fd_server_->Stop();
  Log(LogLevel::kDebug, "manager stopped");
  // Everything in flight has been answered above; what is left are idle
  // connections, which gRPC would wait for until the deadline.
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(200));
  server_->Wait();
  if (health_server_) {
    health_server_->Shutdown(std::chrono::system_clock::now());
    health_server_->Wait();
  }
  Log(LogLevel::kDebug, "grpc stopped");
  StopExposer(std::move(exposer_), cfg_.metrics, metrics_port_);
  Log(LogLevel::kDebug, "metrics stopped");
  if (!cfg_.unix_socket.empty()) unlink(cfg_.unix_socket.c_str());
  Log(LogLevel::kInfo, "stopped");
}

}  // namespace physpool::server
