// SPDX-License-Identifier: Apache-2.0
#include "cli/ctl.h"

#include <signal.h>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/format.h"

namespace physpool::cli {

const char kGlobalHelp[] = R"(Global flags (before or after the command):
  --endpoint ADDR     unix:/path or host:port (env PHYSPOOL_ENDPOINT; default:
                      the daemon's default socket)
  --token TOKEN       bearer token (env PHYSPOOL_TOKEN)
  --token-file FILE   file holding the token (env PHYSPOOL_TOKEN_FILE)
  --tls-ca FILE       TCP with TLS: the server's CA
  --tls-cert FILE, --tls-key FILE   a client certificate (mTLS)
  --timeout DURATION  per call, e.g. 5s (default 10s)
  -o, --output FORMAT table (default), json or yaml
Exit codes: 0 ok, 1 failed, 2 usage, 3 unavailable, 4 unauthenticated or
permission denied, 5 not found, 6 resource exhausted, 7 deadline exceeded.
)";

CLI::App* Noun(CLI::App* root, const std::string& name,
               const std::string& what) {
  CLI::App* noun = root->add_subcommand(name, what);
  noun->require_subcommand(1);
  noun->footer(kGlobalHelp);
  return noun;
}

CLI::App* Leaf(CLI::App* parent, const std::string& name,
               const std::string& synopsis, const std::string& details,
               const std::string& example) {
  return AddLeaf(parent, name, synopsis, details,
                 absl::StrCat("Example: ", example, "\n\n", kGlobalHelp));
}

void AddPageSize(CLI::App* app, int32_t* page_size, const std::string& what) {
  app->add_option("--page-size", *page_size,
                  what + " per request (0: the daemon's default)")
      ->check(CLI::Range(0, INT32_MAX));
}

struct DaemonCommands::State {
  Commands commands;
  ClientOptions flags;  // endpoint, credentials
  std::string timeout, output = "table";
};

DaemonCommands::DaemonCommands(CLI::App* root)
    : state_(std::make_unique<State>()) {
  ClientOptions& f = state_->flags;
  root->add_option("--endpoint", f.endpoint,
                   "unix:/path or host:port (env PHYSPOOL_ENDPOINT)");
  root->add_option("--token", f.token, "bearer token (env PHYSPOOL_TOKEN)");
  root->add_option("--token-file", f.token_file,
                   "file holding the token (env PHYSPOOL_TOKEN_FILE)");
  root->add_option("--tls-ca", f.tls_ca, "TCP with TLS: the server's CA");
  root->add_option("--tls-cert", f.tls_cert, "a client certificate (mTLS)");
  root->add_option("--tls-key", f.tls_key, "its key");
  root->add_option("--timeout", state_->timeout, "per call (default 10s)")
      ->check(DurationCheck());
  root->add_option("-o,--output", state_->output,
                   "table (default), json or yaml")
      ->check(CLI::IsMember({"table", "json", "yaml"}));
  Commands& c = state_->commands;
  AddPoolCommands(root, &c);
  AddSegmentCommands(root, &c);
  AddLeaseCommands(root, &c);
  AddTenantCommands(root, &c);
  AddAllocCommand(root, &c);
  AddWatchCommands(root, &c);
}

DaemonCommands::~DaemonCommands() = default;

std::string DaemonCommands::List() const {
  std::string s;
  for (const Command& c : state_->commands) {
    const CLI::App* parent = c.app->get_parent();
    const bool nested = parent != nullptr && parent->get_parent() != nullptr;
    absl::StrAppend(&s, "  ", nested ? parent->get_name() + " " : "",
                    c.app->get_name(), "\n");
  }
  return s;
}

std::optional<int> DaemonCommands::Run() {
  const Command* cmd = nullptr;
  for (const Command& c : state_->commands) {
    if (c.app->parsed()) cmd = &c;
  }
  if (cmd == nullptr) return std::nullopt;
  Ctx c;
  c.opts = state_->flags;
  if (!state_->timeout.empty()) {  // checked by DurationCheck
    c.timeout = std::chrono::milliseconds(*ParseMillis(state_->timeout));
    c.timeout_given = true;
  }
  c.opts.timeout = c.timeout;
  auto printer = NewPrinter(state_->output);
  if (!printer.ok()) return Fail(printer.status());
  c.out = *std::move(printer);
  auto token = client_internal::ResolveToken(c.opts);
  if (!token.ok()) {
    std::fprintf(stderr, "Error: %s\n",
                 std::string(token.status().message()).c_str());
    return kExitUsage;
  }
  c.token = *token;
  // A command that ends on SIGINT/SIGTERM takes them by sigwait: block
  // them before gRPC starts any thread, so that no thread dies of them.
  if (cmd->waits_for_signal()) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &s, nullptr);
  }
  auto channel = client_internal::OpenChannel(c.opts);
  if (!channel.ok()) {
    std::fprintf(stderr, "Error: %s\n",
                 std::string(channel.status().message()).c_str());
    return kExitUsage;
  }
  c.channel = *channel;
  return cmd->run(c);
}

}  // namespace physpool::cli
