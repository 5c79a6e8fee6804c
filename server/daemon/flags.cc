// SPDX-License-Identifier: Apache-2.0
#include "server/daemon/flags.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/core/log.h"
#include "util/file.h"

namespace physpool::server {

const char kUsage[] =
    R"(physpoold - lease DMA memory to accelerator runtimes

Usage: physpoold [flags]

  --config FILE      YAML configuration (docs/operations.md); without it the
                     embedded default: 1 GiB of sim memory, one implicit admin
                     tenant on the unix socket, TCP on 127.0.0.1 (health only
                     without a token)
  --unix PATH        unix socket ("" disables)
  --fd-socket PATH   socket handing out device/backing fds (default: the
                     unix socket's path + ".fds"; "" disables)
  --tcp HOST:PORT    TCP listener ("" disables; port 0 picks one)
  --insecure-tcp     allow TCP off loopback without TLS
  --metrics HOST:PORT  Prometheus endpoint ("" disables; port 0 picks one)
  --sim-dir DIR      directory of the sim backing files
  --log-level LEVEL  debug, info, warn or error
  --log-format FORMAT  logfmt (the default) or json: one JSON object a line
  --health-listen HOST:PORT  a second listener serving only grpc.health.v1,
                     plaintext and without credentials (for Kubernetes' gRPC
                     probes; "" = none, the default; port 0 picks one)
  --ready-file FILE  write {"unix":..,"tcp_port":..,"metrics_port":..,
                     "health_port":..,"pid":..} once serving
  --check-config FILE  read FILE as --config (with the other flags applied),
                     validate it, print the effective configuration as YAML
                     and exit: 0 if valid, 2 with FILE:LINE: key: reason if
                     not. Nothing is opened or started.
  --version          print the version and the git revision it was built
                     from, and exit
  --help

Under systemd (Type=notify) physpoold sends READY=1 once every listener is
up and health is SERVING, STOPPING=1 on SIGTERM, and WATCHDOG=1 if
WatchdogSec= is set (deploy/systemd/physpoold.service).
Signals: SIGTERM/SIGINT stop it gracefully; SIGHUP reloads the tenants
section of the config (tokens, roles, limits); SIGPIPE is ignored.
)";

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    const bool has_eq = absl::StrContains(a, "=");
    if (has_eq) {
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
    }
    auto next = [&]() -> absl::StatusOr<std::string> {
      if (has_eq) return value;
      if (i + 1 >= argc)
        return absl::InvalidArgumentError(absl::StrCat(a, " needs a value"));
      return std::string(argv[++i]);
    };
    auto take = [&](std::optional<std::string>* out) -> absl::Status {
      auto v = next();
      if (!v.ok()) return v.status();
      *out = *v;
      return absl::OkStatus();
    };
    absl::Status s;
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--config") {
      auto v = next();
      if (!v.ok()) return v.status();
      f.config = *v;
    } else if (a == "--ready-file") {
      auto v = next();
      if (!v.ok()) return v.status();
      f.ready_file = *v;
    } else if (a == "--check-config") {
      auto v = next();
      if (!v.ok()) return v.status();
      if (v->empty()) return absl::InvalidArgumentError("--check-config FILE");
      f.config = *v;
      f.check_config = true;
    } else if (a == "--health-listen") {
      auto v = next();
      if (!v.ok()) return v.status();
      f.health_listen = *v;
    } else if (a == "--unix") {
      s = take(&f.unix_socket);
    } else if (a == "--fd-socket") {
      s = take(&f.fd_socket);
    } else if (a == "--tcp") {
      s = take(&f.tcp);
    } else if (a == "--metrics") {
      s = take(&f.metrics);
    } else if (a == "--sim-dir") {
      s = take(&f.sim_dir);
    } else if (a == "--log-level") {
      s = take(&f.log_level);
    } else if (a == "--log-format") {
      s = take(&f.log_format);
    } else if (a == "--insecure-tcp") {
      f.insecure_tcp = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", a, " (see --help)"));
    }
    if (!s.ok()) return s;
  }
  return f;
}

std::string ReadFile(const std::string& path, absl::string_view what,
                     absl::Status* status) {
  absl::StatusOr<std::string> text = ReadFileToString(path, what);
  if (!text.ok() && status->ok()) *status = text.status();
  return text.ok() ? *std::move(text) : "";
}

absl::StatusOr<ServerConfig> EffectiveConfig(const Flags& flags) {
  absl::StatusOr<ServerConfig> cfg = DefaultConfig();
  const std::string name =
      flags.config.empty() ? "(embedded default)" : flags.config;
  if (!flags.config.empty()) {
    absl::Status read;
    const std::string text = ReadFile(flags.config, "config", &read);
    if (!read.ok()) return read;
    cfg = ParseConfig(text, flags.config);
    if (!cfg.ok()) return cfg.status();
  }
  if (flags.unix_socket) cfg->unix_socket = *flags.unix_socket;
  if (flags.fd_socket) cfg->fd_socket = *flags.fd_socket;
  if (cfg->fd_socket.empty() && !flags.fd_socket && !cfg->unix_socket.empty()) {
    cfg->fd_socket = cfg->unix_socket + ".fds";
  }
  if (flags.tcp) cfg->tcp = *flags.tcp;
  if (flags.metrics) cfg->metrics = *flags.metrics;
  if (flags.sim_dir) cfg->sim.dir = *flags.sim_dir;
  if (flags.insecure_tcp) cfg->insecure_tcp = true;
  if (flags.log_level && !ParseLogLevel(*flags.log_level, &cfg->log_level)) {
    return absl::InvalidArgumentError(
        "--log-level must be debug, info, warn or error");
  }
  if (flags.log_format &&
      !ParseLogFormat(*flags.log_format, &cfg->log_format)) {
    return absl::InvalidArgumentError("--log-format must be logfmt or json");
  }
  if (absl::Status s = CheckListeners(*cfg); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": listen.tcp: ", s.message()));
  }
  return cfg;
}

}  // namespace physpool::server
