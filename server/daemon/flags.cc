// SPDX-License-Identifier: Apache-2.0
#include "server/daemon/flags.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "server/core/log.h"
#include "util/file.h"

namespace physpool::server {

namespace {

constexpr char kDescription[] =
    "physpoold - lease DMA memory to accelerator runtimes\n"
    "Without --config: the embedded default: 1 GiB of sim memory, one "
    "implicit\nadmin tenant on the unix socket, TCP on 127.0.0.1 (health "
    "only without a token).\n";

constexpr char kFooter[] =
    R"(Under systemd (Type=notify) physpoold sends READY=1 once every listener is
up and health is SERVING, STOPPING=1 on SIGTERM, and WATCHDOG=1 if
WatchdogSec= is set (deploy/systemd/physpoold.service).
Signals: SIGTERM/SIGINT stop it gracefully; SIGHUP reloads the tenants
section of the config (tokens, roles, limits); SIGPIPE is ignored.
Exit codes: 0 stopped cleanly; 1 failed while running; 2 a bad flag or
configuration (the flag, or FILE:LINE: key: reason, on stderr).
)";

// An override: `*out` is set only when the flag was given ("" included).
CLI::Option* Override(CLI::App* app, const std::string& name,
                      std::optional<std::string>* out,
                      const std::string& help) {
  return app->add_option_function<std::string>(
      name, [out](const std::string& v) { *out = v; }, help);
}

}  // namespace

void AddFlags(CLI::App* app, Flags* f) {
  app->description(kDescription);
  app->footer(kFooter);
  app->set_help_flag("-h,--help", "print this help and exit");
  app->add_flag("--version",
                "print the version and the git revision it was built from, "
                "and exit");
  CLI::Option* config = app->add_option("--config", f->config,
                  "YAML configuration (docs/operations.md)")
      ->type_name("FILE");
  Override(app, "--unix", &f->unix_socket, "unix socket (\"\" disables)")
      ->type_name("PATH");
  Override(app, "--fd-socket", &f->fd_socket,
           "socket handing out device/backing fds (default: the unix "
           "socket's path + \".fds\"; \"\" disables)")
      ->type_name("PATH");
  Override(app, "--tcp", &f->tcp,
           "TCP listener (\"\" disables; port 0 picks one)")
      ->type_name("HOST:PORT");
  app->add_flag("--insecure-tcp", f->insecure_tcp,
                "allow TCP off loopback without TLS");
  Override(app, "--metrics", &f->metrics,
           "Prometheus endpoint (\"\" disables; port 0 picks one)")
      ->type_name("HOST:PORT");
  Override(app, "--sim-dir", &f->sim_dir, "directory of the sim backing files")
      ->type_name("DIR");
  Override(app, "--log-level", &f->log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->type_name("LEVEL");
  Override(app, "--log-format", &f->log_format,
           "logfmt (the default) or json: one JSON object a line")
      ->type_name("FORMAT");
  app->add_option("--health-listen", f->health_listen,
                  "a second listener serving only grpc.health.v1, "
                  "plaintext and without credentials (for Kubernetes' gRPC "
                  "probes; \"\" = none, the default; port 0 picks one)")
      ->type_name("HOST:PORT");
  app->add_option("--ready-file", f->ready_file,
                  "write {\"unix\":..,\"tcp_port\":..,\"metrics_port\":..,"
                  "\"health_port\":..,\"pid\":..} once serving")
      ->type_name("FILE");
  app->add_option_function<std::string>(
         "--check-config",
         [f](const std::string& v) {
           f->config = v;
           f->check_config = true;
         },
         "read FILE as --config (with the other flags applied), validate it, "
         "print the effective configuration as YAML and exit: 0 if valid, 2 "
         "with FILE:LINE: key: reason if not. Nothing is opened or started.")
      ->check(CLI::Validator(
          [](std::string& v) { return v.empty() ? "takes a FILE" : ""; },
          ""))
      ->type_name("FILE")
      ->excludes(config);
}

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  CLI::App app("", "physpoold");
  AddFlags(&app, &f);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    std::exit(0);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(e.what(), " (see --help)"));
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
