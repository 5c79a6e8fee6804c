// physpoold: owns the DMA memory of the host and leases it to tenants.
// See docs/api.md and docs/operations.md; `physpoold --help` for flags.
#include <arpa/inet.h>
#include <grp.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "server/daemon/config.h"
#include "server/rpc/fd_server.h"
#include "server/daemon/instance_lock.h"
#include "server/daemon/keeper_client.h"
#include "server/store/lease_store.h"
#include "server/core/log.h"
#include "server/rpc/metrics.h"
#include "server/daemon/notify.h"
#include "server/pool_manager.h"
#include "server/daemon/reload.h"
#include "server/rpc/services.h"
#include "util/errno_status.h"
#include "util/file.h"
#include "util/status_macros.h"
#include "vfio/sim_source.h"
#include "vfio/vfio_source.h"

namespace physpool::server {
namespace {

constexpr char kUsage[] =
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
  --health-listen HOST:PORT  a second listener serving only grpc.health.v1,
                     plaintext and without credentials (for Kubernetes' gRPC
                     probes; "" = none, the default; port 0 picks one)
  --ready-file FILE  write {"unix":..,"tcp_port":..,"metrics_port":..,
                     "health_port":..,"pid":..} once serving
  --check-config FILE  read FILE as --config (with the other flags applied),
                     validate it, print the effective configuration as YAML
                     and exit: 0 if valid, 2 with FILE:LINE: key: reason if
                     not. Nothing is opened or started.
  --help

Under systemd (Type=notify) physpoold sends READY=1 once every listener is
up and health is SERVING, STOPPING=1 on SIGTERM, and WATCHDOG=1 if
WatchdogSec= is set (deploy/systemd/physpoold.service).
Signals: SIGTERM/SIGINT stop it gracefully; SIGHUP reloads the tenants
section of the config (tokens, roles, limits); SIGPIPE is ignored.
)";

struct Flags {
  std::string config;
  std::string ready_file;
  std::string health_listen;
  bool check_config = false;  // --check-config FILE: config is FILE
  // Overrides: set only when the flag was given.
  std::optional<std::string> unix_socket, fd_socket, tcp, metrics, sim_dir,
      log_level;
  bool insecure_tcp = false;
};

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

// Removes a stale socket; refuses if a daemon answers on it.
absl::Status PrepareSocket(const std::string& path) {
  // The runtime dir: ours, not a planted one (docs/operations.md,
  // "Directories").
  if (auto s = MakePrivateParentDir(path, 0755); !s.ok()) return s;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return absl::OkStatus();
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const bool live =
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  if (live) {
    return absl::AlreadyExistsError(
        absl::StrCat("another physpoold is listening on ", path));
  }
  unlink(path.c_str());
  return absl::OkStatus();
}

// The process umask for a scope (process-wide: only ever made stricter
// here, so a file another thread creates meanwhile is at most more
// private).
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(umask(mask)) {}
  ~ScopedUmask() { umask(old_); }

 private:
  mode_t old_;
};

// listen.unix_group as a gid: a group name or number; "" = this process's.
absl::StatusOr<gid_t> SocketGroup(const ServerConfig& cfg) {
  if (cfg.unix_group.empty()) return getegid();
  gid_t gid = 0;
  if (absl::SimpleAtoi(cfg.unix_group, &gid)) return gid;
  std::vector<char> buf(16384);
  group g{};
  group* found = nullptr;
  if (getgrnam_r(cfg.unix_group.c_str(), &g, buf.data(), buf.size(), &found) !=
          0 ||
      found == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("no group \"", cfg.unix_group, "\""));
  }
  return found->gr_gid;
}

// Gives a socket made owner-only its configured group and mode.
absl::Status OpenSocket(const std::string& path, uint32_t mode, gid_t gid) {
  if (gid != getegid() && chown(path.c_str(), static_cast<uid_t>(-1), gid)) {
    return ErrnoStatus(absl::StrCat("chgrp ", gid, " ", path), errno);
  }
  if (chmod(path.c_str(), mode) != 0) {
    return ErrnoStatus(absl::StrCat("chmod ", path), errno);
  }
  return absl::OkStatus();
}

// Stops the metrics endpoint at once: civetweb's listener notices its stop
// flag only when its poll (2 s timeout) returns, so it is woken by
// connections until it has stopped.
void StopExposer(std::unique_ptr<prometheus::Exposer> exposer,
                 const std::string& listen, int port) {
  if (!exposer) return;
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    exposer.reset();
    stopped = true;
  });
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "*") host = "127.0.0.1";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ipv4 = inet_pton(AF_INET, host.c_str(), &addr.sin_addr) == 1;
  while (ipv4 && !stopped) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    (void)connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stopper.join();
}

// The file's text, or "" with *status set (the first error is kept).
std::string ReadFile(const std::string& path, absl::string_view what,
                     absl::Status* status) {
  absl::StatusOr<std::string> text = ReadFileToString(path, what);
  if (!text.ok() && status->ok()) *status = text.status();
  return text.ok() ? *std::move(text) : "";
}

// The configuration start-up uses: the file (or the embedded default), then
// the flags, then the checks that span keys. INVALID_ARGUMENT naming the
// file, line (where there is one) and key.
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
  if (absl::Status s = CheckListeners(*cfg); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": listen.tcp: ", s.message()));
  }
  return cfg;
}

// The lock files of what this daemon owns: beside the store, in the sim
// directory, beside the keeper's socket (instance_lock.h). Their
// directories are made as the store and the source would make them.
absl::StatusOr<InstanceLock> LockInstance(const ServerConfig& cfg) {
  std::vector<std::string> paths;
  if (!cfg.store_path.empty()) {
    RETURN_IF_ERROR(MakePrivateParentDir(cfg.store_path, 0755));
    paths.push_back(cfg.store_path + ".lock");
  }
  if (cfg.source == "sim") {
    RETURN_IF_ERROR(MakePrivateDir(cfg.sim.dir, 0700));
    paths.push_back(cfg.sim.dir + "/physpoold.lock");
  } else if (!cfg.vfio.keeper.empty()) {
    paths.push_back(cfg.vfio.keeper + ".lock");
  }
  return InstanceLock::Acquire(paths);
}

int Run(int argc, char** argv) {
  auto flags = ParseFlags(argc, argv);
  if (!flags.ok()) {
    std::fprintf(stderr, "physpoold: %s\n",
                 std::string(flags.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<ServerConfig> cfg = EffectiveConfig(*flags);
  if (!cfg.ok()) {
    std::fprintf(stderr, "physpoold: %s\n",
                 std::string(cfg.status().message()).c_str());
    return 2;
  }
  // The group is looked up on this host: --check-config may run elsewhere
  // (CI), so there an unknown group is a warning.
  absl::StatusOr<gid_t> socket_gid = SocketGroup(*cfg);
  if (!socket_gid.ok() && !flags->check_config) {
    std::fprintf(
        stderr, "physpoold: %s: listen.unix_group: %s\n",
        flags->config.empty() ? "(embedded default)" : flags->config.c_str(),
        std::string(socket_gid.status().message()).c_str());
    return 2;
  }
  if (flags->check_config) {
    std::vector<std::string> warnings = ConfigWarnings(*cfg);
    if (!socket_gid.ok()) {
      warnings.push_back(absl::StrCat(
          "listen.unix_group: ", socket_gid.status().message(),
          " on this host: physpoold refuses to start where it is missing"));
    }
    for (const std::string& w : warnings) {
      std::fprintf(stderr, "physpoold: %s: warning: %s\n",
                   flags->config.c_str(), w.c_str());
    }
    std::fputs(FormatConfig(*cfg).c_str(), stdout);
    std::fprintf(stderr, "physpoold: %s: configuration is valid\n",
                 flags->config.c_str());
    return 0;
  }
  const bool embedded = flags->config.empty();
  SetLogLevel(cfg->log_level);
  const bool tls = !cfg->tls_cert.empty();
  ServiceNotifier notifier;

  // Signals are taken by sigwait in this thread only: SIGTERM and SIGINT
  // stop, SIGHUP reloads the tenants (reload.h). A write to a socket whose
  // peer is gone is an error, never a signal.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // One daemon per store and pool, before anything is opened, restored or
  // zeroed (instance_lock.h).
  absl::StatusOr<InstanceLock> instance = LockInstance(*cfg);
  if (!instance.ok()) {
    Log(LogLevel::kError, "cannot own this pool: refusing to start",
        {F("error", instance.status().ToString())});
    return 1;
  }

  // physpool-keeper holds the vfio source's descriptors across a crash
  // (docs/vfio.md, "Restart with isolation on"). Outlives the source.
  std::unique_ptr<KeeperClient> keeper;
  std::unique_ptr<vfio::MemorySource> source_holder;
  vfio::VfioSource* vfio_source = nullptr;
  if (cfg->source == "vfio" && !cfg->vfio.keeper.empty()) {
    auto k = KeeperClient::Connect(cfg->vfio.keeper, absl::Seconds(10));
    if (!k.ok()) {
      Log(LogLevel::kError, "physpool-keeper unreachable",
          {F("socket", cfg->vfio.keeper),
           F("error", std::string(k.status().message()))});
      return 1;
    }
    keeper = *std::move(k);
    cfg->vfio.stash = keeper.get();
    cfg->manager.trusted_holders.insert(keeper->pid());
    Log(LogLevel::kInfo, "physpool-keeper",
        {F("socket", cfg->vfio.keeper), F("pid", keeper->pid()),
         F("instance", keeper->instance())});
  }
  if (cfg->source == "vfio") {
    source_holder = std::make_unique<vfio::VfioSource>(
        cfg->vfio, vfio::LinuxKernel(), [](const std::string& notice) {
          Log(LogLevel::kWarn, "vfio", {F("notice", notice)});
        });
    vfio_source = static_cast<vfio::VfioSource*>(source_holder.get());
  } else {
    source_holder = std::make_unique<vfio::SimSource>(cfg->sim);
  }
  vfio::MemorySource& source = *source_holder;
  // The lease store first: whether it holds live leases decides whether the
  // backing is re-attached as it is or zeroed.
  std::unique_ptr<LeaseStore> store;
  if (!cfg->store_path.empty()) {
    if (absl::Status s = MakePrivateParentDir(cfg->store_path, 0755); !s.ok()) {
      Log(LogLevel::kError, "lease store directory",
          {F("path", cfg->store_path), F("error", s.ToString())});
      return 1;
    }
    auto boot = ReadBootId(cfg->boot_id_file);
    if (boot.ok() && keeper) {
      // The keeper's memory lives as long as the keeper: a new keeper is a
      // new "boot" of it.
      boot = absl::StrCat(*boot, ";keeper=", keeper->instance());
    } else if (boot.ok() && !source.persistent()) {
      // memfd backing dies with the daemon: every start is a new "boot" of
      // the memory, and leases of the last one are void.
      boot = absl::StrCat(*boot, ";memfd-instance=", getpid(), "-",
                          absl::ToUnixNanos(absl::Now()));
    }
    auto opened =
        boot.ok() ? LeaseStore::Open(cfg->store_path, *boot, source.Layout())
                  : absl::StatusOr<std::unique_ptr<LeaseStore>>(boot.status());
    if (!opened.ok()) {
      Log(LogLevel::kError, "lease store refused",
          {F("path", cfg->store_path), F("error", opened.status().ToString()),
           F("hint", "see docs/operations.md, \"A damaged store\"")});
      return 1;
    }
    store = *std::move(opened);
    if (store->voided_leases() > 0) {
      Log(LogLevel::kWarn,
          keeper ? "host rebooted or physpool-keeper restarted since the "
                   "store was written: leases void"
          : source.persistent()
              ? "host rebooted since the store was written: leases void"
              : "memfd backing does not survive a restart without "
                "physpool-keeper: leases void",
          {F("voided", store->voided_leases())});
    }
  }
  const bool reattach =
      store && (!store->leases().empty() || !store->scrubs().empty());
  const absl::Time source_start = absl::Now();
  if (absl::Status s = source.Start(reattach); !s.ok()) {
    Log(LogLevel::kError, "memory source failed",
        {F("source", source.name()), F("error", std::string(s.message()))});
    return 1;
  }
  // Segments added at run time before the restart.
  for (const StoredSegment& added :
       store ? store->segments() : std::vector<StoredSegment>{}) {
    vfio::BackedSegment seg;
    seg.spec.iova = added.iova;
    seg.spec.pages = pglist::PageCount(added.bytes / source.page_size());
    seg.spec.freelist = added.freelist;
    seg.spec.numa = added.numa;
    seg.path = added.path;
    if (absl::Status s = source.RestoreSegment(seg, reattach).status();
        !s.ok()) {
      Log(LogLevel::kError, "cannot restore a segment added at run time",
          {F("iova", vfio::Hex(added.iova)), F("bytes", added.bytes),
           F("error", std::string(s.message())),
           F("hint", "see docs/operations.md, \"A damaged store\"")});
      return 1;
    }
  }
  for (const vfio::IovaRange& r : source.iova_ranges()) {
    Log(LogLevel::kInfo, "iova range",
        {F("first", vfio::Hex(r.first)), F("last", vfio::Hex(r.last))});
  }
  if (vfio_source != nullptr) {
    const vfio::VfioSource::Timings t = vfio_source->timings();
    Log(LogLevel::kInfo, "vfio mapped",
        {F("map_dma_calls", t.map_calls),
         F("map_dma_ms", absl::ToDoubleMilliseconds(t.map_dma)),
         F("backing_ms", absl::ToDoubleMilliseconds(t.backing)),
         F("dma_mappings_left", vfio_source->dma_avail())});
  }
  // Per-lease CPU views (isolation), per isolation.mode.
  ManagerOptions manager_options = cfg->manager;
  {
    const absl::Status views = source.ViewSupport();
    manager_options.per_lease_views = views.ok() && cfg->isolation != "off";
    if (cfg->isolation == "off") {
      manager_options.isolation_detail =
          "isolation.mode: off: tenants get whole segment fds";
    } else if (!views.ok()) {
      manager_options.isolation_detail = std::string(views.message());
      if (cfg->isolation == "required") {
        Log(LogLevel::kError, "tenant isolation unavailable: refusing to start",
            {F("error", std::string(views.message())),
             F("hint",
               "fix the cause, or set isolation.mode: preferred (runs with "
               "isolation off) in the config; docs/vfio.md")});
        return 1;
      }
    } else {
      manager_options.isolation_detail =
          vfio_source != nullptr ? "udmabuf per lease" : "a file per lease";
    }
    if (!manager_options.per_lease_views) {
      Log(LogLevel::kWarn,
          "tenant isolation OFF: a tenant's fd maps whole segments, other "
          "tenants' memory included",
          {F("why", manager_options.isolation_detail)});
    }
    if (vfio_source != nullptr && manager_options.per_lease_views) {
      const vfio::Kernel::UdmabufInfo u = vfio_source->udmabuf_info();
      Log(LogLevel::kInfo, "udmabuf",
          {F("size_limit_mb", u.size_limit_mb), F("list_limit", u.list_limit)});
      if (u.list_limit != 0 &&
          u.list_limit < manager_options.max_runs_per_lease) {
        Log(LogLevel::kWarn,
            "udmabuf list_limit is below leases.max_runs_per_lease: leases "
            "with more runs cannot be mapped",
            {F("list_limit", u.list_limit),
             F("max_runs_per_lease", manager_options.max_runs_per_lease),
             F("hint", absl::StrCat("echo ", manager_options.max_runs_per_lease,
                                    " > /sys/module/udmabuf/parameters/"
                                    "list_limit"))});
      }
      uint64_t pool_bytes = 0;
      for (const auto& seg : source.segments())
        pool_bytes += seg.spec.pages.value * source.page_size();
      if (u.size_limit_mb != 0 && (u.size_limit_mb << 20) < pool_bytes) {
        Log(LogLevel::kWarn,
            "udmabuf size_limit_mb is below the pool: larger leases cannot "
            "be mapped",
            {F("size_limit_mb", u.size_limit_mb),
             F("pool_mb", pool_bytes >> 20),
             F("hint", absl::StrCat("echo ", (pool_bytes + (1 << 20) - 1) >> 20,
                                    " > /sys/module/udmabuf/parameters/"
                                    "size_limit_mb"))});
      }
    }
  }
  // One lease always fits one answer (a list's page holds at least its
  // first lease): leases.max_runs_per_lease is refused where the largest
  // lease, with this pool's longest backing path, would not.
  {
    size_t max_path =
        (cfg->source == "sim" ? cfg->sim.dir : cfg->vfio.dir).size() +
        64;  // a segment added at run time
    for (const auto& seg : source.segments())
      max_path = std::max(max_path, seg.path.size());
    const uint32_t most = MaxRunsPerAnswer(max_path);
    if (manager_options.max_runs_per_lease > most) {
      Log(LogLevel::kError,
          "leases.max_runs_per_lease is too large: a lease of that many runs "
          "would not fit one answer",
          {F("max_runs_per_lease", manager_options.max_runs_per_lease),
           F("answer_bytes",
             LeaseAnswerBound(manager_options.max_runs_per_lease, max_path)),
           F("max_answer_bytes", kMaxAnswerBytes),
           F("longest_backing_path", max_path),
           F("hint",
             absl::StrCat("at most ", most,
                          " here (shorter backing paths allow more)"))});
      return 2;
    }
  }
  std::vector<Tenant> tenants = cfg->tenants;
  if (cfg->implicit_tenant) tenants.push_back(Authenticator::Implicit());
  TenantRegistry registry(tenants);
  SystemClock clock;
  PoolManager manager(manager_options, &source, &clock, &registry, store.get());
  if (absl::Status s = manager.Start(); !s.ok()) {
    Log(LogLevel::kError, "pool failed to start", {F("error", s.ToString())});
    return 1;
  }
  uint64_t total = 0;
  for (const auto& seg : source.segments()) {
    total += seg.spec.pages.value * source.page_size();
    Log(LogLevel::kInfo, "segment",
        {F("iova", absl::StrCat("0x", absl::Hex(seg.spec.iova))),
         F("bytes", seg.spec.pages.value * source.page_size()),
         F("freelist", seg.spec.freelist), F("numa", seg.spec.numa),
         F("backing", seg.path)});
  }
  Log(LogLevel::kInfo, "memory ready",
      {F("source", source.name()), F("page_size", source.page_size()),
       F("bytes", total), F("segments", source.segments().size()),
       F("reattached", reattach ? "yes" : "no"),
       F("devices",
         absl::StrJoin(source.devices(), ",",
                       [](std::string* out, const vfio::VfioDevice& d) {
                         out->append(d.bdf);
                       })),
       F("start_ms", absl::ToInt64Milliseconds(absl::Now() - source_start))});
  for (const std::string& w : ConfigWarnings(*cfg)) {
    Log(LogLevel::kWarn, "configuration", {F("warning", w)});
  }
  if (embedded) {
    Log(LogLevel::kWarn, "embedded default configuration",
        {F("tenants",
           "one implicit tenant \"default\" with admin rights, no "
           "authentication"),
         F("hint", "pass --config for tenants, tokens and TLS")});
  }

  Authenticator auth(&registry, cfg->implicit_tenant,
                     [&manager](const std::string& sha) {
                       return manager.TenantOfAccessToken(sha);
                     });
  PoolService pool_service(&manager, &auth, &registry,
                           SourceFacts{source.name(), source.iova_ranges(),
                                       source.devices(), cfg->fd_socket});
  AdminService admin_service(&manager, &auth, &registry);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!cfg->unix_socket.empty()) {
    if (absl::Status s = PrepareSocket(cfg->unix_socket); !s.ok()) {
      Log(LogLevel::kError, "unix socket", {F("error", s.ToString())});
      return 1;
    }
    builder.AddListeningPort("unix:" + cfg->unix_socket,
                             grpc::InsecureServerCredentials());
  }
  int tcp_port = 0;
  if (!cfg->tcp.empty()) {
    std::shared_ptr<grpc::ServerCredentials> creds =
        grpc::InsecureServerCredentials();
    if (tls) {
      absl::Status read;
      grpc::SslServerCredentialsOptions opts(
          cfg->tls_client_ca.empty()
              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      opts.pem_key_cert_pairs.push_back(
          {ReadFile(cfg->tls_key, "TLS key", &read),
           ReadFile(cfg->tls_cert, "TLS certificate", &read)});
      if (!cfg->tls_client_ca.empty())
        opts.pem_root_certs =
            ReadFile(cfg->tls_client_ca, "TLS client CA", &read);
      if (!read.ok()) {
        Log(LogLevel::kError, "TLS files", {F("error", read.ToString())});
        return 1;
      }
      creds = grpc::SslServerCredentials(opts);
    }
    builder.AddListeningPort(cfg->tcp, creds, &tcp_port);
  }
  builder.RegisterService(&pool_service);
  builder.RegisterService(&admin_service);
  // Requests are small; every answer is below 4 MiB (pages, run cap).
  builder.SetMaxReceiveMessageSize(1 << 20);
  builder.SetMaxSendMessageSize(kMaxAnswerBytes);
  // Sockets are made owner-only (umask) and then opened to the configured
  // mode and group: no other process can connect in between.
  std::optional<ScopedUmask> private_sockets(0177);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || (!cfg->tcp.empty() && tcp_port == 0)) {
    Log(LogLevel::kError, "cannot listen",
        {F("unix", cfg->unix_socket), F("tcp", cfg->tcp)});
    return 1;
  }

  // After the gRPC socket: PrepareSocket has ruled out a live daemon here.
  FdServer fd_server(&source, &manager, &auth);
  if (!cfg->fd_socket.empty()) {
    absl::Status s = MakePrivateParentDir(cfg->fd_socket, 0755);
    if (s.ok()) s = fd_server.Start(cfg->fd_socket, cfg->fd_access);
    if (s.ok()) s = OpenSocket(cfg->fd_socket, cfg->unix_mode, *socket_gid);
    if (!s.ok()) {
      Log(LogLevel::kError, "fd socket", {F("error", s.ToString())});
      return 1;
    }
  }
  private_sockets.reset();
  if (!cfg->unix_socket.empty()) {
    if (absl::Status s =
            OpenSocket(cfg->unix_socket, cfg->unix_mode, *socket_gid);
        !s.ok()) {
      Log(LogLevel::kError, "unix socket", {F("error", s.ToString())});
      return 1;
    }
  }

  std::unique_ptr<prometheus::Exposer> exposer;
  // The exposer keeps a weak_ptr: the collector lives here.
  ConfigReloader reloader([&flags] { return EffectiveConfig(*flags); }, *cfg,
                          &registry, &manager);
  auto collector =
      std::make_shared<PoolCollector>(&manager, &reloader.counters());
  int metrics_port = 0;
  if (!cfg->metrics.empty()) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(cfg->metrics);
      exposer->RegisterCollectable(collector);
      metrics_port = exposer->GetListeningPorts().at(0);
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "metrics endpoint",
          {F("listen", cfg->metrics), F("error", e.what())});
      return 1;
    }
  }
  // Health only, for probes that cannot use the unix socket or credentials
  // (Kubernetes' gRPC probes): the Pool and Admin services stay off it.
  std::unique_ptr<grpc::Server> health_server;
  int health_port = 0;
  if (!flags->health_listen.empty()) {
    grpc::ServerBuilder hb;
    hb.AddListeningPort(flags->health_listen, grpc::InsecureServerCredentials(),
                        &health_port);
    health_server = hb.BuildAndStart();
    if (!health_server || health_port == 0) {
      Log(LogLevel::kError, "cannot listen",
          {F("health_listen", flags->health_listen)});
      return 1;
    }
  }
  // SERVING only now, with every listener up, and then while the manager
  // serves (the store writable: docs/operations.md, "The store").
  auto set_health = [&server, &health_server](bool serving) {
    server->GetHealthCheckService()->SetServingStatus(serving);
    if (health_server)
      health_server->GetHealthCheckService()->SetServingStatus(serving);
  };
  manager.SetHealthCallback([&set_health](bool serving) {
    set_health(serving);
    Log(LogLevel::kInfo, "health", {F("serving", serving ? "yes" : "no")});
  });
  Log(LogLevel::kInfo, "serving",
      {F("unix", cfg->unix_socket), F("fd_socket", cfg->fd_socket),
       F("tcp", cfg->tcp.empty() ? "" : cfg->tcp), F("tcp_port", tcp_port),
       F("tls", tls ? "on" : "off"),
       F("metrics", cfg->metrics.empty() ? "" : absl::StrCat(cfg->metrics)),
       F("metrics_port", metrics_port),
       F("health_listen", flags->health_listen), F("health_port", health_port),
       F("pid", getpid())});
  if (!flags->ready_file.empty()) {
    const std::string tmp = flags->ready_file + ".tmp";
    std::ofstream(tmp) << "{\"unix\":\"" << cfg->unix_socket
                       << "\",\"tcp_port\":" << tcp_port
                       << ",\"metrics_port\":" << metrics_port
                       << ",\"health_port\":" << health_port
                       << ",\"pid\":" << getpid() << "}\n";
    std::rename(tmp.c_str(), flags->ready_file.c_str());
  }
  notifier.Ready(
      absl::StrCat("serving ", total, " bytes from ", source.name()));
  // Stats() takes the pool's lock: a daemon stuck holding it stops pinging.
  notifier.StartWatchdog([&manager] {
    (void)manager.Stats();
    return true;
  });

  int sig = 0;
  while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
    Log(LogLevel::kInfo, "SIGHUP: reloading the configuration",
        {F("config", embedded ? "(embedded default)" : flags->config)});
    reloader.Reload();
  }
  notifier.Stopping(absl::StrCat("stopping on ", strsignal(sig)));
  Log(LogLevel::kInfo, "shutting down", {F("signal", strsignal(sig))});
  manager.SetHealthCallback(nullptr);
  set_health(false);
  // Waiters and reclaims are answered UNAVAILABLE, Watch streams end, the
  // store's queue is applied and answered: nothing in flight is dropped.
  manager.Shutdown();
  fd_server.Stop();
  Log(LogLevel::kDebug, "manager stopped");
  // Everything in flight has been answered above; what is left are idle
  // connections, which gRPC would wait for until the deadline.
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(200));
  server->Wait();
  if (health_server) {
    health_server->Shutdown(std::chrono::system_clock::now());
    health_server->Wait();
  }
  Log(LogLevel::kDebug, "grpc stopped");
  StopExposer(std::move(exposer), cfg->metrics, metrics_port);
  Log(LogLevel::kDebug, "metrics stopped");
  if (!cfg->unix_socket.empty()) unlink(cfg->unix_socket.c_str());
  Log(LogLevel::kInfo, "stopped");
  return 0;
}

}  // namespace
}  // namespace physpool::server

int main(int argc, char** argv) {
#ifdef NDEBUG
  // absl's deadlock detector builds a lock graph on every Mutex::Lock
  // (GraphCycles in the RPC path's profile, docs/performance.md): on in
  // debug and sanitizer builds, off in release ones.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  return physpool::server::Run(argc, argv);
}
