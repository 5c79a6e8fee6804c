// SPDX-License-Identifier: Apache-2.0
// The human format (-o table, the default): aligned tables, usage bars,
// the occupancy map and one-line summaries. Sizes in binary units, times
// relative to now.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/format.h"
#include "cli/printer.h"

namespace physpool::cli {
namespace {

std::string Hex(uint64_t v) { return absl::StrCat("0x", absl::Hex(v)); }

std::string ExpiresIn(int64_t unix_ms) {
  const int64_t left = unix_ms - absl::ToUnixMillis(absl::Now());
  if (left <= 0) return "expired";
  return absl::FormatDuration(
      absl::Trunc(absl::Milliseconds(left), absl::Seconds(1)));
}

std::string Limit(uint64_t v, absl::string_view unit, bool bytes) {
  if (v == 0) return absl::StrCat("unlimited ", unit);
  return bytes ? HumanBytes(v) : absl::StrCat(v, " ", unit);
}

void Out(const std::string& s) {
  std::fputs(s.c_str(), stdout);
  std::fflush(stdout);
}

void PrintSegmentRows(
    const google::protobuf::RepeatedPtrField<v1::SegmentInfo>& segs) {
  Table t({"ID", "IOVA", "SIZE", "FREELIST", "NUMA", "STATE", "USED",
           "SCRUBBING", "FREE", "LARGEST FREE", "BACKING"});
  for (const auto& s : segs) {
    t.Add({absl::StrCat(s.id()), Hex(s.iova()), HumanBytes(s.bytes()),
           absl::StrCat(s.freelist()), absl::StrCat(s.numa_node()),
           s.draining() ? "draining" : "active", HumanBytes(s.used_bytes()),
           HumanBytes(s.scrubbing_bytes()), HumanBytes(s.free_bytes()),
           HumanBytes(s.largest_free_run_bytes()), s.backing_path()});
  }
  Out(t.Render());
}

// Who still holds an ended lease's memory (docs/isolation.md).
void PrintQuarantine(const v1::Quarantine& q) {
  std::printf(
      "QUARANTINED: ended %s ago, its memory held out of the pool "
      "while it is still mapped\n",
      absl::FormatDuration(
          absl::Trunc(absl::Now() - absl::FromUnixMillis(q.since_unix_ms()),
                      absl::Seconds(1)))
          .c_str());
  for (const auto& h : q.holders()) {
    if (h.pid() == 0 && h.references() > 0) {
      std::printf(
          "  held by %lld reference(s) the kernel counts that no scan "
          "named (a process physpoold cannot see, a socket's queue, an "
          "importer)\n",
          static_cast<long long>(h.references()));
    } else if (h.pid() == 0) {
      std::printf("  held: %s\n", h.command().c_str());
    } else {
      std::printf("  held by pid %d (%s) uid %u: %s\n", h.pid(),
                  h.command().c_str(), h.uid(),
                  h.uninspected() ? "may not be inspected (counts as holding)"
                  : h.fd()        ? (h.mapped() ? "fd and mapping" : "fd")
                                  : "mapping");
    }
  }
  if (q.more_holders() > 0)
    std::printf("  and %u more holders\n", q.more_holders());
  if (q.holders().empty()) std::printf("  (not yet scanned)\n");
}

class TablePrinter final : public Printer {
 public:
  void PoolStatus(const v1::GetPoolInfoResponse& info) const override {
    Table t({"SEGMENT", "IOVA", "SIZE", "FL", "NUMA", "USAGE", "USED",
             "SCRUBBING", "FREE", "LARGEST FREE"});
    for (const auto& s : info.segments()) {
      t.Add({absl::StrCat(s.id(), s.draining() ? " (draining)" : ""),
             Hex(s.iova()), HumanBytes(s.bytes()), absl::StrCat(s.freelist()),
             absl::StrCat(s.numa_node()),
             UsageBar(s.used_bytes(), s.scrubbing_bytes(), s.bytes(), 30),
             HumanBytes(s.used_bytes()), HumanBytes(s.scrubbing_bytes()),
             HumanBytes(s.free_bytes()),
             HumanBytes(s.largest_free_run_bytes())});
    }
    std::fputs(t.Render().c_str(), stdout);
    const uint64_t total =
        info.free_bytes() + info.used_bytes() + info.scrubbing_bytes();
    std::printf(
        "total %s: used %s, scrubbing %s, free %s  (page %s, source %s)\n",
        HumanBytes(total).c_str(), HumanBytes(info.used_bytes()).c_str(),
        HumanBytes(info.scrubbing_bytes()).c_str(),
        HumanBytes(info.free_bytes()).c_str(),
        HumanBytes(info.page_size()).c_str(), info.source().c_str());
    std::printf("isolation %s (%s); quarantined %s in %u ended lease%s\n",
                info.isolation().c_str(), info.isolation_detail().c_str(),
                HumanBytes(info.quarantined_bytes()).c_str(),
                info.quarantined_leases(),
                info.quarantined_leases() == 1 ? "" : "s");
    std::printf("tenant %s: %u leases, %s (limits: %s, %s)\n",
                info.tenant().c_str(), info.tenant_leases(),
                HumanBytes(info.tenant_bytes()).c_str(),
                Limit(info.limits().max_bytes(), "bytes", true).c_str(),
                Limit(info.limits().max_leases(), "leases", false).c_str());
    if (info.iova_ranges_size() > 0) {
      std::string ranges;
      for (const auto& r : info.iova_ranges())
        absl::StrAppend(&ranges, " [", Hex(r.first()), ", ", Hex(r.last()),
                        "]");
      std::printf("IOMMU IOVA ranges:%s\n", ranges.c_str());
    }
    if (info.devices_size() > 0) {
      // Per device: who it belongs to and what its IOMMU domain maps.
      Table devices({"DEVICE", "TENANT", "DOMAIN", "DMA LIMIT", "MAPPINGS",
                     "MAPPED", "MAPPINGS LEFT"});
      for (const auto& d : info.devices()) {
        devices.Add({d.bdf(), d.tenant().empty() ? "(pool-wide)" : d.tenant(),
                     d.domain(), d.dma_limit() ? Hex(d.dma_limit()) : "none",
                     absl::StrCat(d.mappings()), HumanBytes(d.mapped_bytes()),
                     d.dma_avail() < 0 ? "?" : absl::StrCat(d.dma_avail())});
      }
      std::fputs(devices.Render().c_str(), stdout);
    }
    std::fflush(stdout);
  }

  void PoolMap(const MapView& m) const override {
    const uint64_t ps = m.page_size;
    for (const auto& so : m.occupancy->segments()) {
      const auto& seg = so.segment();
      const uint64_t pages = seg.bytes() / ps;
      // At most 4 rows per segment: one cell covers enough pages for that.
      const uint64_t per_cell =
          std::max<uint64_t>(1, (pages + 4 * m.width - 1) / (4 * m.width));
      std::vector<StateRun> runs;
      for (const auto& r : so.runs()) {
        runs.push_back(
            {State(r.state()), (r.iova() - seg.iova()) / ps, r.length() / ps});
      }
      std::printf("segment %u  %s  %s  freelist %u  numa %d%s  (1 cell = %s)\n",
                  seg.id(), Hex(seg.iova()).c_str(),
                  HumanBytes(seg.bytes()).c_str(), seg.freelist(),
                  seg.numa_node(), seg.draining() ? "  draining" : "",
                  HumanBytes(per_cell * ps).c_str());
      std::fputs(
          DrawCells(Cells(runs, pages, per_cell), m.width, m.ascii).c_str(),
          stdout);
    }
    Out(MapLegend(m.ascii));
  }

  void Segments(const v1::ListSegmentsResponse& list) const override {
    PrintSegmentRows(list.segments());
  }

  void Segment(const v1::SegmentResponse& one) const override {
    google::protobuf::RepeatedPtrField<v1::SegmentInfo> rows;
    *rows.Add() = one.segment();
    PrintSegmentRows(rows);
  }

  void SegmentRemoved(uint32_t id,
                      const v1::RemoveSegmentResponse&) const override {
    Out(absl::StrCat("segment ", id, " removed\n"));
  }

  void Leases(const v1::ListLeasesResponse& list) const override {
    Table t({"ID", "TENANT", "SIZE", "RUNS", "FIRST IOVA", "EXPIRES IN", "PATH",
             "PREEMPTIBLE", "LABEL"});
    for (const auto& l : list.leases()) {
      t.Add({l.id(), l.tenant(), HumanBytes(l.bytes()),
             absl::StrCat(l.runs_size()),
             l.runs_size() ? Hex(l.runs(0).iova()) : "-",
             ExpiresIn(l.expires_unix_ms()), l.path(),
             l.preemptible() ? "yes" : "no", l.label()});
    }
    Out(t.Render());
  }

  void Lease(const v1::Lease& l, LeaseShown why) const override {
    if (why == LeaseShown::kRevoked) std::printf("revoked:\n");
    std::printf(
        "lease %s  tenant %s  %s in %d run%s  path %s  ttl %us  expires in "
        "%s%s%s%s%s\n",
        l.id().c_str(), l.tenant().c_str(), HumanBytes(l.bytes()).c_str(),
        l.runs_size(), l.runs_size() == 1 ? "" : "s", l.path().c_str(),
        l.ttl_seconds(), ExpiresIn(l.expires_unix_ms()).c_str(),
        l.preemptible() ? "  preemptible" : "",
        l.request_id().empty() ? "" : "  request ", l.request_id().c_str(),
        // A lease access token reaches it too (a DRA claim's lease).
        l.has_access_token() ? "  access-token" : "");
    if (l.has_quarantine()) PrintQuarantine(l.quarantine());
    // Backing paths come in the Admin view only.
    Table t({"IOVA", "LENGTH", "SEGMENT", "VIEW OFFSET", "BACKING", "OFFSET"});
    for (const auto& r : l.runs()) {
      const bool admin = !r.backing_path().empty();
      t.Add({Hex(r.iova()), HumanBytes(r.length()),
             absl::StrCat(r.segment_id()), absl::StrCat(r.view_offset()),
             admin ? r.backing_path() : "-",
             admin ? absl::StrCat(r.backing_offset()) : "-"});
    }
    std::fputs(t.Render().c_str(), stdout);
    if (why == LeaseShown::kHeld) {
      std::printf(
          "holding it (renewed in the background); Ctrl-C releases it\n");
    } else if (why == LeaseShown::kGranted) {
      std::printf(
          "granted: it lives until its TTL runs out unless renewed "
          "(physpoolctl lease renew %s) or released (physpoolctl release "
          "%s)\n",
          l.id().c_str(), l.id().c_str());
    }
    std::fflush(stdout);
  }

  void Released(const std::string& id,
                const v1::ReleaseResponse& r) const override {
    Out(absl::StrCat(id,
                     r.released() ? " released\n" : " was already released\n"));
  }

  void Tenants(const v1::ListTenantsResponse& list) const override {
    Table t({"NAME", "ROLES", "MAX BYTES", "MAX LEASES", "BYTES", "LEASES"});
    for (const auto& tn : list.tenants()) {
      t.Add({tn.name(), absl::StrJoin(tn.roles(), ","),
             tn.limits().max_bytes() ? HumanBytes(tn.limits().max_bytes())
                                     : "unlimited",
             tn.limits().max_leases() ? absl::StrCat(tn.limits().max_leases())
                                      : "unlimited",
             HumanBytes(tn.bytes()), absl::StrCat(tn.leases())});
    }
    Out(t.Render());
  }

  void TenantLimits(const v1::SetTenantLimitsResponse& r) const override {
    const auto& limits = r.tenant().limits();
    Out(absl::StrCat("tenant ", r.tenant().name(), ": max ",
                     Limit(limits.max_bytes(), "bytes", true), ", max ",
                     Limit(limits.max_leases(), "leases", false), "\n"));
  }

  void Health(const grpc::health::v1::HealthCheckResponse& r) const override {
    Out(absl::StrCat(
        grpc::health::v1::HealthCheckResponse::ServingStatus_Name(r.status()),
        "\n"));
  }

  void EventsStart() const override {
    Out(absl::StrFormat("%-24s %-10s %-20s %s\n", "TIME", "KIND", "LEASE",
                        "REASON"));
  }

  void Event(const v1::LeaseEvent& e) const override {
    Out(absl::StrFormat("%-24s %-10s %-20s %s\n",
                        absl::FormatTime("%Y-%m-%dT%H:%M:%E3S",
                                         absl::FromUnixMillis(e.unix_ms()),
                                         absl::LocalTimeZone()),
                        v1::LeaseEvent::Kind_Name(e.kind()), e.lease_id(),
                        e.reason()));
  }

 private:
  static CellState State(v1::OccupancyRun::State s) {
    switch (s) {
      case v1::OccupancyRun::FREE:
        return CellState::kFree;
      case v1::OccupancyRun::USED:
        return CellState::kUsed;
      case v1::OccupancyRun::PREEMPTIBLE:
        return CellState::kPreemptible;
      default:
        return CellState::kScrubbing;
    }
  }
};

}  // namespace

std::unique_ptr<Printer> NewTablePrinter() {
  return std::make_unique<TablePrinter>();
}

}  // namespace physpool::cli
