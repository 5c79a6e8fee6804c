// SPDX-License-Identifier: Apache-2.0
#include "server/daemon/daemon.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/core/log.h"
#include "server/daemon/sockets.h"
#include "util/file.h"
#include "util/status_macros.h"
#include "vfio/sim_source.h"

namespace physpool::server {
namespace {

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

}  // namespace

Daemon::Daemon(Flags flags, ServerConfig cfg, gid_t socket_gid)
    : flags_(std::move(flags)),
      cfg_(std::move(cfg)),
      socket_gid_(socket_gid),
      embedded_(flags_.config.empty()) {}

Daemon::~Daemon() = default;

int Daemon::Run() {
  SetLogLevel(cfg_.log_level);
  SetLogFormat(cfg_.log_format);
  for (int (Daemon::*phase)() :
       {&Daemon::Take, &Daemon::OpenStore, &Daemon::StartMemory,
        &Daemon::Isolation, &Daemon::AnswerBound, &Daemon::StartPool,
        &Daemon::Listen, &Daemon::Publish}) {
    if (const int code = (this->*phase)(); code != 0) return code;
  }
  Serve();
  Stop();
  return 0;
}

int Daemon::Take() {
  // Signals are taken by sigwait in this thread only: SIGTERM and SIGINT
  // stop, SIGHUP reloads the tenants (reload.h). A write to a socket whose
  // peer is gone is an error, never a signal.
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGTERM);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // One daemon per store and pool, before anything is opened, restored or
  // zeroed (instance_lock.h).
  absl::StatusOr<InstanceLock> instance = LockInstance(cfg_);
  if (!instance.ok()) {
    Log(LogLevel::kError, "cannot own this pool: refusing to start",
        {F("error", instance.status().ToString())});
    return 1;
  }
  instance_.emplace(*std::move(instance));
  // physpool-keeper holds the vfio source's descriptors across a crash
  // (docs/vfio.md, "Restart with isolation on"). Outlives the source.
  if (cfg_.source == "vfio" && !cfg_.vfio.keeper.empty()) {
    auto k = KeeperClient::Connect(cfg_.vfio.keeper, absl::Seconds(10));
    if (!k.ok()) {
      Log(LogLevel::kError, "physpool-keeper unreachable",
          {F("socket", cfg_.vfio.keeper),
           F("error", std::string(k.status().message()))});
      return 1;
    }
    keeper_ = *std::move(k);
    cfg_.vfio.stash = keeper_.get();
    cfg_.manager.trusted_holders.insert(keeper_->pid());
    Log(LogLevel::kInfo, "physpool-keeper",
        {F("socket", cfg_.vfio.keeper), F("pid", keeper_->pid()),
         F("instance", keeper_->instance())});
  }
  if (cfg_.source == "vfio") {
    source_ = std::make_unique<vfio::VfioSource>(
        cfg_.vfio, vfio::LinuxKernel(), [](const std::string& notice) {
          Log(LogLevel::kWarn, "vfio", {F("notice", notice)});
        });
    vfio_source_ = static_cast<vfio::VfioSource*>(source_.get());
  } else {
    source_ = std::make_unique<vfio::SimSource>(cfg_.sim);
  }
  return 0;
}

int Daemon::OpenStore() {
  // The lease store first: whether it holds live leases decides whether the
  // backing is re-attached as it is or zeroed.
  if (cfg_.store_path.empty()) return 0;
  if (absl::Status s = MakePrivateParentDir(cfg_.store_path, 0755); !s.ok()) {
    Log(LogLevel::kError, "lease store directory",
        {F("path", cfg_.store_path), F("error", s.ToString())});
    return 1;
  }
  auto boot = ReadBootId(cfg_.boot_id_file);
  if (boot.ok() && keeper_) {
    // The keeper's memory lives as long as the keeper: a new keeper is a
    // new "boot" of it.
    boot = absl::StrCat(*boot, ";keeper=", keeper_->instance());
  } else if (boot.ok() && !source_->persistent()) {
    // memfd backing dies with the daemon: every start is a new "boot" of
    // the memory, and leases of the last one are void.
    boot = absl::StrCat(*boot, ";memfd-instance=", getpid(), "-",
                        absl::ToUnixNanos(absl::Now()));
  }
  auto opened =
      boot.ok() ? LeaseStore::Open(cfg_.store_path, *boot, source_->Layout())
                : absl::StatusOr<std::unique_ptr<LeaseStore>>(boot.status());
  if (!opened.ok()) {
    Log(LogLevel::kError, "lease store refused",
        {F("path", cfg_.store_path), F("error", opened.status().ToString()),
         F("hint", "see docs/operations.md, \"A damaged store\"")});
    return 1;
  }
  store_ = *std::move(opened);
  if (store_->voided_leases() > 0) {
    Log(LogLevel::kWarn,
        keeper_ ? "host rebooted or physpool-keeper restarted since the "
                  "store was written: leases void"
        : source_->persistent()
            ? "host rebooted since the store was written: leases void"
            : "memfd backing does not survive a restart without "
              "physpool-keeper: leases void",
        {F("voided", store_->voided_leases())});
  }
  return 0;
}

int Daemon::StartMemory() {
  vfio::MemorySource& source = *source_;
  reattach_ =
      store_ && (!store_->leases().empty() || !store_->scrubs().empty());
  source_start_ = absl::Now();
  if (absl::Status s = source.Start(reattach_); !s.ok()) {
    Log(LogLevel::kError, "memory source failed",
        {F("source", source.name()), F("error", std::string(s.message()))});
    return 1;
  }
  // Segments added at run time before the restart.
  for (const StoredSegment& added :
       store_ ? store_->segments() : std::vector<StoredSegment>{}) {
    vfio::BackedSegment seg;
    seg.spec.iova = added.iova;
    seg.spec.pages = pglist::PageCount(added.bytes / source.page_size());
    seg.spec.freelist = added.freelist;
    seg.spec.numa = added.numa;
    seg.path = added.path;
    if (absl::Status s = source.RestoreSegment(seg, reattach_).status();
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
  if (vfio_source_ != nullptr) {
    const vfio::VfioSource::Timings t = vfio_source_->timings();
    Log(LogLevel::kInfo, "vfio mapped",
        {F("map_dma_calls", t.map_calls),
         F("map_dma_ms", absl::ToDoubleMilliseconds(t.map_dma)),
         F("backing_ms", absl::ToDoubleMilliseconds(t.backing)),
         F("dma_mappings_left", vfio_source_->dma_avail())});
  }
  return 0;
}

int Daemon::Isolation() {
  // Per-lease CPU views (isolation), per isolation.mode.
  ManagerOptions& o = manager_options_ = cfg_.manager;
  const absl::Status views = source_->ViewSupport();
  o.per_lease_views = views.ok() && cfg_.isolation != "off";
  if (cfg_.isolation == "off") {
    o.isolation_detail = "isolation.mode: off: tenants get whole segment fds";
  } else if (!views.ok()) {
    o.isolation_detail = std::string(views.message());
    if (cfg_.isolation == "required") {
      Log(LogLevel::kError, "tenant isolation unavailable: refusing to start",
          {F("error", std::string(views.message())),
           F("hint",
             "fix the cause, or set isolation.mode: preferred (runs with "
             "isolation off) in the config; docs/vfio.md")});
      return 1;
    }
  } else {
    o.isolation_detail =
        vfio_source_ != nullptr ? "udmabuf per lease" : "a file per lease";
  }
  if (!o.per_lease_views) {
    Log(LogLevel::kWarn,
        "tenant isolation OFF: a tenant's fd maps whole segments, other "
        "tenants' memory included",
        {F("why", o.isolation_detail)});
  }
  if (vfio_source_ == nullptr || !o.per_lease_views) return 0;
  const vfio::Kernel::UdmabufInfo u = vfio_source_->udmabuf_info();
  Log(LogLevel::kInfo, "udmabuf",
      {F("size_limit_mb", u.size_limit_mb), F("list_limit", u.list_limit)});
  if (u.list_limit != 0 && u.list_limit < o.max_runs_per_lease) {
    Log(LogLevel::kWarn,
        "udmabuf list_limit is below leases.max_runs_per_lease: leases with "
        "more runs cannot be mapped",
        {F("list_limit", u.list_limit),
         F("max_runs_per_lease", o.max_runs_per_lease),
         F("hint", absl::StrCat("echo ", o.max_runs_per_lease,
                                " > /sys/module/udmabuf/parameters/"
                                "list_limit"))});
  }
  uint64_t pool_bytes = 0;
  for (const auto& seg : source_->segments())
    pool_bytes += seg.spec.pages.value * source_->page_size();
  if (u.size_limit_mb != 0 && (u.size_limit_mb << 20) < pool_bytes) {
    Log(LogLevel::kWarn,
        "udmabuf size_limit_mb is below the pool: larger leases cannot be "
        "mapped",
        {F("size_limit_mb", u.size_limit_mb), F("pool_mb", pool_bytes >> 20),
         F("hint", absl::StrCat("echo ", (pool_bytes + (1 << 20) - 1) >> 20,
                                " > /sys/module/udmabuf/parameters/"
                                "size_limit_mb"))});
  }
  return 0;
}

int Daemon::AnswerBound() {
  // One lease always fits one answer (a list's page holds at least its
  // first lease): leases.max_runs_per_lease is refused where the largest
  // lease, with this pool's longest backing path, would not.
  size_t max_path =
      (cfg_.source == "sim" ? cfg_.sim.dir : cfg_.vfio.dir).size() +
      64;  // a segment added at run time
  for (const auto& seg : source_->segments())
    max_path = std::max(max_path, seg.path.size());
  const uint32_t most = MaxRunsPerAnswer(max_path);
  const uint32_t runs = manager_options_.max_runs_per_lease;
  if (runs <= most) return 0;
  Log(LogLevel::kError,
      "leases.max_runs_per_lease is too large: a lease of that many runs "
      "would not fit one answer",
      {F("max_runs_per_lease", runs),
       F("answer_bytes", LeaseAnswerBound(runs, max_path)),
       F("max_answer_bytes", kMaxAnswerBytes),
       F("longest_backing_path", max_path),
       F("hint", absl::StrCat("at most ", most,
                              " here (shorter backing paths allow more)"))});
  return 2;
}

int Daemon::StartPool() {
  std::vector<Tenant> tenants = cfg_.tenants;
  if (cfg_.implicit_tenant) tenants.push_back(Authenticator::Implicit());
  registry_ = std::make_unique<TenantRegistry>(tenants);
  manager_ = std::make_unique<PoolManager>(
      manager_options_, source_.get(), &clock_, registry_.get(), store_.get());
  if (absl::Status s = manager_->Start(); !s.ok()) {
    Log(LogLevel::kError, "pool failed to start", {F("error", s.ToString())});
    return 1;
  }
  const vfio::MemorySource& source = *source_;
  for (const auto& seg : source.segments()) {
    total_bytes_ += seg.spec.pages.value * source.page_size();
    Log(LogLevel::kInfo, "segment",
        {F("iova", absl::StrCat("0x", absl::Hex(seg.spec.iova))),
         F("bytes", seg.spec.pages.value * source.page_size()),
         F("freelist", seg.spec.freelist), F("numa", seg.spec.numa),
         F("backing", seg.path)});
  }
  Log(LogLevel::kInfo, "memory ready",
      {F("source", source.name()), F("page_size", source.page_size()),
       F("bytes", total_bytes_), F("segments", source.segments().size()),
       F("reattached", reattach_ ? "yes" : "no"),
       F("devices",
         absl::StrJoin(source.devices(), ",",
                       [](std::string* out, const vfio::VfioDevice& d) {
                         out->append(d.bdf);
                       })),
       F("start_ms", absl::ToInt64Milliseconds(absl::Now() - source_start_))});
  for (const std::string& w : ConfigWarnings(cfg_)) {
    Log(LogLevel::kWarn, "configuration", {F("warning", w)});
  }
  if (embedded_) {
    Log(LogLevel::kWarn, "embedded default configuration",
        {F("tenants",
           "one implicit tenant \"default\" with admin rights, no "
           "authentication"),
         F("hint", "pass --config for tenants, tokens and TLS")});
  }
  return 0;
}

}  // namespace physpool::server
