// SPDX-License-Identifier: Apache-2.0
#include "server/rpc/metrics.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "prometheus/client_metric.h"
#include "util/build_info.h"

namespace physpool::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

ClientMetric Value(MetricType type, double v,
                   std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  return m;
}

// A family with one unlabelled value.
MetricFamily Single(const char* name, const char* help, MetricType type,
                    double v) {
  MetricFamily f = Family(name, help, type);
  f.metric.push_back(Value(type, v));
  return f;
}

ClientMetric HistogramMetric(const Histogram& h,
                             std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.histogram.sample_count = h.count;
  m.histogram.sample_sum = h.sum;
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= h.bounds.size(); ++i) {
    cumulative += h.counts[i];
    ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound = i < h.bounds.size()
                        ? h.bounds[i]
                        : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  return m;
}

// Pages by segment and state, the longest free run.
void AddPages(const ManagerStats& st, std::vector<MetricFamily>* out) {
  MetricFamily pages = Family(
      "physpool_pages", "Pool pages by segment and state.", MetricType::Gauge);
  MetricFamily largest =
      Family("physpool_segment_largest_free_run_pages",
             "Longest run of free pages in each segment.", MetricType::Gauge);
  for (const SegmentView& s : st.segments) {
    const std::string seg = absl::StrCat(s.info.id);
    const std::string fl = absl::StrCat(s.info.spec.freelist);
    const std::string numa = absl::StrCat(s.info.spec.numa);
    const double used =
        static_cast<double>(s.info.used_pages.value - s.scrubbing_pages);
    for (auto [state, v] :
         {std::pair{"free", static_cast<double>(s.info.free_pages.value)},
          std::pair{"used", used},
          std::pair{"scrubbing", static_cast<double>(s.scrubbing_pages)}}) {
      pages.metric.push_back(Value(MetricType::Gauge, v,
                                   {{"freelist", fl},
                                    {"numa", numa},
                                    {"segment", seg},
                                    {"state", state}}));
    }
    largest.metric.push_back(Value(
        MetricType::Gauge, static_cast<double>(s.info.largest_free_run.value),
        {{"segment", seg}}));
  }
  out->push_back(std::move(pages));
  out->push_back(std::move(largest));
}

// Allocation attempts, fallbacks and the core's time, by path.
void AddAllocation(const ManagerStats& st, std::vector<MetricFamily>* out) {
  MetricFamily requests =
      Family("physpool_alloc_requests_total",
             "Allocation attempts by path and result.", MetricType::Counter);
  for (pglist::Path p : {pglist::Path::kSimple, pglist::Path::kContig,
                         pglist::Path::kMulti, pglist::Path::kAggressive}) {
    const pglist::PathCounters& c = st.pool.at(p);
    const std::string path(pglist::PathName(p));
    requests.metric.push_back(Value(MetricType::Counter,
                                    static_cast<double>(c.successes),
                                    {{"path", path}, {"result", "success"}}));
    for (int r = 1; r < pglist::kNumFailReasons; ++r) {
      requests.metric.push_back(
          Value(MetricType::Counter, static_cast<double>(c.failures[r]),
                {{"path", path},
                 {"result", std::string(pglist::FailReasonName(
                                static_cast<pglist::FailReason>(r)))}}));
    }
  }
  out->push_back(std::move(requests));

  MetricFamily fallbacks =
      Family("physpool_alloc_fallbacks_total",
             "Requests one path could not serve that went on to another.",
             MetricType::Counter);
  using pglist::Path;
  for (auto [from, to] : {std::pair{Path::kContig, Path::kMulti},
                          std::pair{Path::kSimple, Path::kAggressive},
                          std::pair{Path::kContig, Path::kAggressive},
                          std::pair{Path::kMulti, Path::kAggressive}}) {
    fallbacks.metric.push_back(Value(
        MetricType::Counter, static_cast<double>(st.pool.fallback(from, to)),
        {{"from", std::string(pglist::PathName(from))},
         {"to", std::string(pglist::PathName(to))}}));
  }
  fallbacks.metric.push_back(Value(MetricType::Counter,
                                   static_cast<double>(st.waits_started),
                                   {{"from", "any"}, {"to", "wait"}}));
  out->push_back(std::move(fallbacks));

  // Every node of the pool, 0 until a fallback from it.
  MetricFamily numa = Family(
      "physpool_numa_fallback_total",
      "Grants served off their preferred NUMA node (a non-strict request "
      "whose node had no room), by the preferred node.",
      MetricType::Counter);
  std::map<int32_t, uint64_t> by_node = st.numa_fallbacks;
  for (const SegmentView& s : st.segments) by_node.emplace(s.info.spec.numa, 0);
  for (const auto& [node, n] : by_node) {
    numa.metric.push_back(Value(MetricType::Counter, static_cast<double>(n),
                                {{"numa", absl::StrCat(node)}}));
  }
  out->push_back(std::move(numa));

  MetricFamily duration =
      Family("physpool_alloc_duration_seconds",
             "Time the allocation core took per request, by path.",
             MetricType::Histogram);
  for (const auto& [path, h] : st.alloc_seconds) {
    duration.metric.push_back(HistogramMetric(h, {{"path", path}}));
  }
  out->push_back(std::move(duration));
}

// Live leases per tenant, their ends, and waiting.
void AddLeases(const ManagerStats& st, std::vector<MetricFamily>* out) {
  MetricFamily leases =
      Family("physpool_leases", "Live leases per tenant.", MetricType::Gauge);
  MetricFamily lease_bytes =
      Family("physpool_lease_bytes", "Bytes held by live leases per tenant.",
             MetricType::Gauge);
  for (const auto& [tenant, u] : st.tenants) {
    leases.metric.push_back(
        Value(MetricType::Gauge, u.leases, {{"tenant", tenant}}));
    lease_bytes.metric.push_back(Value(
        MetricType::Gauge, static_cast<double>(u.bytes), {{"tenant", tenant}}));
  }
  out->push_back(std::move(leases));
  out->push_back(std::move(lease_bytes));

  out->push_back(Single("physpool_lease_expirations_total",
                        "Leases that expired without renewal.",
                        MetricType::Counter,
                        static_cast<double>(st.lease_expirations)));

  MetricFamily revocations =
      Family("physpool_lease_revocations_total",
             "Leases ended by revocation, by reason.", MetricType::Counter);
  for (const char* reason : {"admin", "preempted"}) {
    auto it = st.revocations.find(reason);
    revocations.metric.push_back(Value(
        MetricType::Counter, it == st.revocations.end() ? 0.0 : it->second,
        {{"reason", reason}}));
  }
  out->push_back(std::move(revocations));

  out->push_back(
      Single("physpool_reclaimed_bytes_total",
             "Bytes of preemptible leases reclaimed by the aggressive path.",
             MetricType::Counter, static_cast<double>(st.reclaimed_bytes)));

  MetricFamily wait =
      Family("physpool_wait_duration_seconds",
             "Time requests spent waiting for memory.", MetricType::Histogram);
  wait.metric.push_back(HistogramMetric(st.wait_seconds));
  out->push_back(std::move(wait));
}

// The page size, zeroing, the store, waiters and streams.
void AddUpkeep(const ManagerStats& st, std::vector<MetricFamily>* out) {
  // So that dashboards turn page counts into bytes.
  out->push_back(Single("physpool_page_size_bytes", "The pool's page size.",
                        MetricType::Gauge, static_cast<double>(st.page_size)));

  out->push_back(Single("physpool_scrub_backlog_pages",
                        "Pages waiting to be zeroed before reuse.",
                        MetricType::Gauge,
                        static_cast<double>(st.scrub_backlog_pages)));
  out->push_back(Single(
      "physpool_scrub_failed_pages",
      "Pages whose zeroing failed: held out of the pool until it succeeds.",
      MetricType::Gauge, static_cast<double>(st.scrub_failed_pages)));
  out->push_back(Single("physpool_scrub_errors_total",
                        "Zeroing attempts that failed.", MetricType::Counter,
                        static_cast<double>(st.scrub_errors)));
  out->push_back(Single("physpool_store_errors_total",
                        "Lease store writes that failed.", MetricType::Counter,
                        static_cast<double>(st.store_errors)));
  out->push_back(Single("physpool_store_transactions_total",
                        "Lease store transactions committed or attempted.",
                        MetricType::Counter,
                        static_cast<double>(st.store_transactions)));
  out->push_back(Single("physpool_store_changes_total",
                        "Changes those transactions carried (several "
                        "concurrent calls share one: group commit).",
                        MetricType::Counter,
                        static_cast<double>(st.store_changes)));
  out->push_back(Single("physpool_store_led_transactions_total",
                        "Transactions applied by the RPC or scrub thread that "
                        "made the change, not handed to the store's thread.",
                        MetricType::Counter,
                        static_cast<double>(st.store_led_transactions)));
  out->push_back(Single(
      "physpool_store_writable",
      "1 while the lease store takes writes; 0: NOT_SERVING, pages held.",
      MetricType::Gauge, st.store_writable ? 1.0 : 0.0));
  out->push_back(
      Single("physpool_waiting_requests",
             "Requests waiting for memory, and reclaims in progress.",
             MetricType::Gauge, static_cast<double>(st.waiting)));
  out->push_back(Single("physpool_watch_streams", "Open Watch streams.",
                        MetricType::Gauge,
                        static_cast<double>(st.watch_streams)));
}

// Per-lease views and the quarantine.
void AddIsolation(const ManagerStats& st, std::vector<MetricFamily>* out) {
  out->push_back(Single(
      "physpool_isolation",
      "1: each lease's fd maps that lease only; 0: isolation off (segment "
      "fds).",
      MetricType::Gauge, st.per_lease_views ? 1.0 : 0.0));
  out->push_back(Single("physpool_lease_views",
                        "Per-lease CPU views, live and quarantined.",
                        MetricType::Gauge, static_cast<double>(st.views)));
  out->push_back(Single(
      "physpool_quarantined_bytes",
      "Memory of ended leases their tenant still maps: held out of the pool.",
      MetricType::Gauge, static_cast<double>(st.quarantined_bytes)));
  out->push_back(Single(
      "physpool_quarantined_leases", "Ended leases whose view is still held.",
      MetricType::Gauge, static_cast<double>(st.quarantined_leases)));
  out->push_back(Single("physpool_quarantine_scans_total",
                        "Scans of /proc for holders of quarantined views.",
                        MetricType::Counter,
                        static_cast<double>(st.quarantine_scans)));
  out->push_back(Single("physpool_quarantine_last_scan_seconds",
                        "How long the last quarantine scan took.",
                        MetricType::Gauge, st.last_scan_seconds));
  out->push_back(Single(
      "physpool_quarantined_unverified_bytes",
      "Quarantined memory held only because the daemon cannot tell that "
      "nothing holds it (processes it may not inspect, a scan that cannot "
      "see every process, references the kernel counts but no scan names).",
      MetricType::Gauge, static_cast<double>(st.quarantined_unverified_bytes)));
  out->push_back(Single(
      "physpool_quarantine_uninspected_processes",
      "Processes the last quarantine scan could not inspect (another uid, no "
      "CAP_SYS_PTRACE): each counts as holding every view it cannot count.",
      MetricType::Gauge, static_cast<double>(st.last_scan_uninspected)));
  out->push_back(Single(
      "physpool_quarantine_blind",
      "1: the quarantine's /proc scan cannot see every process (another pid "
      "namespace, hidepid): views without a kernel count stay quarantined.",
      MetricType::Gauge, st.quarantine_blind ? 1.0 : 0.0));
}

// Per device, its IOMMU domain; DMA map errors and stuck memory.
void AddDevices(const ManagerStats& st, std::vector<MetricFamily>* out) {
  MetricFamily maps = Family(
      "physpool_device_mappings",
      "DMA mappings in each device's IOMMU domain (tenant \"\": pool-wide).",
      MetricType::Gauge);
  MetricFamily bytes =
      Family("physpool_device_mapped_bytes",
             "Bytes mapped in each device's IOMMU domain.", MetricType::Gauge);
  MetricFamily avail = Family(
      "physpool_device_dma_avail",
      "DMA mappings left in each device's IOMMU domain (dma_entry_limit).",
      MetricType::Gauge);
  for (const vfio::DeviceDomain& d : st.devices) {
    std::vector<ClientMetric::Label> labels = {{"bdf", d.device.bdf},
                                               {"tenant", d.device.tenant},
                                               {"domain", d.domain}};
    maps.metric.push_back(
        Value(MetricType::Gauge, static_cast<double>(d.mappings), labels));
    bytes.metric.push_back(
        Value(MetricType::Gauge, static_cast<double>(d.mapped_bytes), labels));
    if (d.dma_avail >= 0) {
      avail.metric.push_back(
          Value(MetricType::Gauge, static_cast<double>(d.dma_avail), labels));
    }
  }
  out->push_back(std::move(maps));
  out->push_back(std::move(bytes));
  out->push_back(std::move(avail));
  out->push_back(Single("physpool_dma_map_errors_total",
                        "Grants refused because mapping them for the "
                        "tenant's devices failed.",
                        MetricType::Counter,
                        static_cast<double>(st.dma_map_errors)));
  out->push_back(Single("physpool_dma_unmap_errors_total",
                        "Lease ends whose unmap from the tenant's devices "
                        "failed (the memory is held back).",
                        MetricType::Counter,
                        static_cast<double>(st.dma_unmap_errors)));
  out->push_back(Single("physpool_dma_stuck_bytes",
                        "Memory held out of the pool because a device may "
                        "still reach it (an unmap failed).",
                        MetricType::Gauge,
                        static_cast<double>(st.dma_stuck_bytes)));
}

}  // namespace

std::vector<MetricFamily> PoolCollector::Collect() const {
  const ManagerStats st = manager_->Stats();
  std::vector<MetricFamily> out;
  // Always 1: the labels say what runs (`physpoold --version`).
  MetricFamily build = Family(
      "physpool_build_info",
      "The version and git revision of the running physpoold (always 1).",
      MetricType::Gauge);
  build.metric.push_back(Value(MetricType::Gauge, 1,
                               {{"version", std::string(BuildVersion())},
                                {"revision", std::string(BuildRevision())}}));
  out.push_back(std::move(build));
  AddPages(st, &out);
  AddAllocation(st, &out);
  AddLeases(st, &out);
  AddUpkeep(st, &out);
  AddIsolation(st, &out);
  if (!st.devices.empty()) AddDevices(st, &out);
  if (reloads_ != nullptr) {
    MetricFamily reloads =
        Family("physpool_config_reloads_total",
               "Configuration reloads (SIGHUP): ok, or error (the running "
               "configuration stayed).",
               MetricType::Counter);
    reloads.metric.push_back(Value(MetricType::Counter,
                                   static_cast<double>(reloads_->ok.load()),
                                   {{"result", "ok"}}));
    reloads.metric.push_back(Value(MetricType::Counter,
                                   static_cast<double>(reloads_->failed.load()),
                                   {{"result", "error"}}));
    out.push_back(std::move(reloads));
  }
  return out;
}

}  // namespace physpool::server
