// SPDX-License-Identifier: Apache-2.0
#include "cli/ctl.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/format.h"
#include "client/connection.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "physpool/client.h"
#include "physpool/v1/physpool.grpc.pb.h"

namespace physpool::cli {
namespace {

// --- Exit codes (docs/cli.md) ------------------------------------------------
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

int ExitCodeFor(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK:
      return 0;
    case grpc::StatusCode::UNAVAILABLE:
      return 3;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return 4;
    case grpc::StatusCode::NOT_FOUND:
      return 5;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 6;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 7;
    default:
      return kExitFailed;
  }
}

const char* CodeName(grpc::StatusCode c) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i <= 16 ? kNames[i] : "UNKNOWN";
}

int Fail(const grpc::Status& s) {
  std::fprintf(stderr, "Error: %s: %s\n", CodeName(s.error_code()),
               s.error_message().c_str());
  return ExitCodeFor(s.error_code());
}

int Fail(const absl::Status& s) {
  return Fail(grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                           std::string(s.message())));
}

int Usage(const std::string& msg) {
  std::fprintf(stderr, "Error: %s\n", msg.c_str());
  return kExitUsage;
}

// --- Arguments -------------------------------------------------------------

struct Args {
  std::vector<std::string> pos;
  std::map<std::string, std::string> flags;  // "--bytes" -> "1MiB"; bools -> ""
  bool Has(const std::string& f) const { return flags.count(f) != 0; }
  std::string Get(const std::string& f, const std::string& def = "") const {
    auto it = flags.find(f);
    return it == flags.end() ? def : it->second;
  }
};

const std::set<std::string> kBoolFlags = {
    "--all",         "--ascii", "--preemptible", "--reclaim",
    "--numa-strict", "--help",  "--summary"};
const std::set<std::string> kGlobalFlags = {
    "--endpoint", "--token",   "--token-file", "--tls-ca", "--tls-cert",
    "--tls-key",  "--timeout", "--output",     "--help"};

const std::set<std::string>& KnownFlags();

absl::StatusOr<Args> Parse(const std::vector<std::string>& argv) {
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string f = argv[i];
    if (f == "-o") f = "--output";
    if (f == "-h") f = "--help";
    if (f.size() < 2 || f[0] != '-' || f == "-") {
      a.pos.push_back(argv[i]);
      continue;
    }
    std::string value;
    const size_t eq = f.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = f.substr(eq + 1);
      f = f.substr(0, eq);
    }
    if (kBoolFlags.count(f)) {
      a.flags[f] = "";
      continue;
    }
    if (!KnownFlags().count(f)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", f, " (see --help)"));
    }
    if (!inline_value) {
      if (i + 1 >= argv.size())
        return absl::InvalidArgumentError(f + " needs a value");
      value = argv[++i];
    }
    a.flags[f] = value;
  }
  return a;
}

// --- Context ---------------------------------------------------------------

struct Ctx {
  ClientOptions opts;
  std::string token;
  std::shared_ptr<grpc::Channel> channel;
  bool json = false;
  std::chrono::milliseconds timeout{10000};
  bool timeout_given = false;
  int32_t page_size = 0;  // --page-size; 0 = the daemon's default

  std::unique_ptr<grpc::ClientContext> Call() const {
    return client_internal::NewContext(token, timeout);
  }
  std::unique_ptr<v1::Pool::Stub> Pool() const {
    return v1::Pool::NewStub(channel);
  }
  std::unique_ptr<v1::Admin::Stub> Admin() const {
    return v1::Admin::NewStub(channel);
  }
};

// --- Pages -----------------------------------------------------------------

// Reads a paged list (AIP-158) to its end: asks for page after page, each
// with its own deadline, passing each answer's next_page_token as the next
// page_token until it is "", and hands every page to `merge`. A daemon that
// hands out a token it gave before would never end: INTERNAL.
template <typename Resp, typename Req, typename Call, typename Merge>
grpc::Status FollowPages(const Ctx& c, Req req, Call call, Merge merge) {
  req.set_page_size(c.page_size);
  std::set<std::string> seen;
  for (;;) {
    Resp page;
    auto ctx = c.Call();
    if (grpc::Status s = call(ctx.get(), req, &page); !s.ok()) return s;
    std::string next = page.next_page_token();
    merge(std::move(page));
    if (next.empty()) return grpc::Status::OK;
    if (!seen.insert(next).second) {
      return grpc::Status(
          grpc::StatusCode::INTERNAL,
          "the daemon answered page token \"" + next + "\" a second time");
    }
    req.set_page_token(std::move(next));
  }
}

// All pages of a list whose items are one repeated field: protobuf's
// MergeFrom appends them. The result has no next_page_token.
template <typename Resp, typename Req, typename Call>
grpc::Status ListAll(const Ctx& c, Req req, Call call, Resp* all) {
  all->Clear();
  grpc::Status s = FollowPages<Resp>(
      c, std::move(req), call, [all](Resp page) { all->MergeFrom(page); });
  all->clear_next_page_token();
  return s;
}

// Appends an occupancy page to `all`. Pages count runs, so a segment may
// continue on the next page: its runs join the same segment (and a run cut
// at the page boundary becomes one again).
void MergeOccupancy(v1::OccupancyResponse page, v1::OccupancyResponse* all) {
  for (v1::SegmentOccupancy& so : *page.mutable_segments()) {
    const int n = all->segments_size();
    if (n == 0 || all->segments(n - 1).segment().id() != so.segment().id()) {
      *all->add_segments() = std::move(so);
      continue;
    }
    v1::SegmentOccupancy* last = all->mutable_segments(n - 1);
    for (const v1::OccupancyRun& r : so.runs()) {
      const int k = last->runs_size();
      v1::OccupancyRun* prev = k > 0 ? last->mutable_runs(k - 1) : nullptr;
      if (prev != nullptr && prev->state() == r.state() &&
          prev->iova() + prev->length() == r.iova()) {
        prev->set_length(prev->length() + r.length());
      } else {
        *last->add_runs() = r;
      }
    }
  }
}

void PrintJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  o.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  std::fputs(out.c_str(), stdout);
}

std::string Hex(uint64_t v) { return absl::StrCat("0x", absl::Hex(v)); }

std::string ExpiresIn(int64_t unix_ms) {
  const int64_t left = unix_ms - absl::ToUnixMillis(absl::Now());
  if (left <= 0) return "expired";
  return absl::FormatDuration(
      absl::Trunc(absl::Milliseconds(left), absl::Seconds(1)));
}

void PrintSegments(
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
  std::fputs(t.Render().c_str(), stdout);
}

void PrintLeases(const google::protobuf::RepeatedPtrField<v1::Lease>& leases) {
  Table t({"ID", "TENANT", "SIZE", "RUNS", "FIRST IOVA", "EXPIRES IN", "PATH",
           "PREEMPTIBLE", "LABEL"});
  for (const auto& l : leases) {
    t.Add({l.id(), l.tenant(), HumanBytes(l.bytes()),
           absl::StrCat(l.runs_size()),
           l.runs_size() ? Hex(l.runs(0).iova()) : "-",
           ExpiresIn(l.expires_unix_ms()), l.path(),
           l.preemptible() ? "yes" : "no", l.label()});
  }
  std::fputs(t.Render().c_str(), stdout);
}

void PrintLease(const v1::Lease& l) {
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
  if (l.has_quarantine()) {
    const auto& q = l.quarantine();
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
  // Backing paths come in the Admin view only.
  Table t({"IOVA", "LENGTH", "SEGMENT", "VIEW OFFSET", "BACKING", "OFFSET"});
  for (const auto& r : l.runs()) {
    const bool admin = !r.backing_path().empty();
    t.Add({Hex(r.iova()), HumanBytes(r.length()), absl::StrCat(r.segment_id()),
           absl::StrCat(r.view_offset()), admin ? r.backing_path() : "-",
           admin ? absl::StrCat(r.backing_offset()) : "-"});
  }
  std::fputs(t.Render().c_str(), stdout);
}

// One segment, as JSON or a one-row table.
int ShowSegment(const Ctx& c, const v1::SegmentResponse& resp) {
  if (c.json) {
    PrintJson(resp);
  } else {
    google::protobuf::RepeatedPtrField<v1::SegmentInfo> one;
    *one.Add() = resp.segment();
    PrintSegments(one);
  }
  return 0;
}

// --- Commands --------------------------------------------------------------

int PoolStatus(const Ctx& c, const Args&) {
  v1::GetPoolInfoResponse info;
  auto ctx = c.Call();
  if (auto s = c.Pool()->GetPoolInfo(ctx.get(), {}, &info); !s.ok())
    return Fail(s);
  if (c.json) {
    PrintJson(info);
    return 0;
  }
  Table t({"SEGMENT", "IOVA", "SIZE", "FL", "NUMA", "USAGE", "USED",
           "SCRUBBING", "FREE", "LARGEST FREE"});
  for (const auto& s : info.segments()) {
    t.Add({absl::StrCat(s.id(), s.draining() ? " (draining)" : ""),
           Hex(s.iova()), HumanBytes(s.bytes()), absl::StrCat(s.freelist()),
           absl::StrCat(s.numa_node()),
           UsageBar(s.used_bytes(), s.scrubbing_bytes(), s.bytes(), 30),
           HumanBytes(s.used_bytes()), HumanBytes(s.scrubbing_bytes()),
           HumanBytes(s.free_bytes()), HumanBytes(s.largest_free_run_bytes())});
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
  std::printf(
      "tenant %s: %u leases, %s (limits: %s, %s)\n", info.tenant().c_str(),
      info.tenant_leases(), HumanBytes(info.tenant_bytes()).c_str(),
      info.limits().max_bytes() ? HumanBytes(info.limits().max_bytes()).c_str()
                                : "unlimited bytes",
      info.limits().max_leases()
          ? absl::StrCat(info.limits().max_leases(), " leases").c_str()
          : "unlimited leases");
  if (info.iova_ranges_size() > 0) {
    std::string ranges;
    for (const auto& r : info.iova_ranges()) {
      absl::StrAppend(&ranges, " [", Hex(r.first()), ", ", Hex(r.last()), "]");
    }
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
  return 0;
}

int PoolMap(const Ctx& c, const Args& a) {
  v1::OccupancyRequest req;
  if (a.Has("--segment")) {
    uint32_t id;
    if (!absl::SimpleAtoi(a.Get("--segment"), &id))
      return Usage("--segment takes a segment id");
    req.set_segment_id(id);
  }
  int width = 64;
  if (a.Has("--width") && (!absl::SimpleAtoi(a.Get("--width"), &width) ||
                           width < 8 || width > 1000)) {
    return Usage("--width takes a number of cells from 8 to 1000");
  }
  const bool ascii = a.Has("--ascii");
  v1::OccupancyResponse occ;
  auto admin = c.Admin();
  if (auto s = FollowPages<v1::OccupancyResponse>(
          c, req,
          [&](grpc::ClientContext* ctx, const v1::OccupancyRequest& r,
              v1::OccupancyResponse* page) {
            return admin->GetOccupancy(ctx, r, page);
          },
          [&](v1::OccupancyResponse page) {
            MergeOccupancy(std::move(page), &occ);
          });
      !s.ok()) {
    return Fail(s);
  }
  if (c.json) {
    PrintJson(occ);
    return 0;
  }
  v1::GetPoolInfoResponse info;
  auto ctx = c.Call();
  if (auto s = c.Pool()->GetPoolInfo(ctx.get(), {}, &info); !s.ok())
    return Fail(s);
  const uint64_t ps = info.page_size();
  for (const auto& so : occ.segments()) {
    const auto& seg = so.segment();
    const uint64_t pages = seg.bytes() / ps;
    // At most 4 rows per segment: one cell covers enough pages for that.
    const uint64_t per_cell =
        std::max<uint64_t>(1, (pages + 4 * width - 1) / (4 * width));
    std::vector<StateRun> runs;
    for (const auto& r : so.runs()) {
      runs.push_back({static_cast<CellState>(
                          r.state() == v1::OccupancyRun::FREE          ? 0
                          : r.state() == v1::OccupancyRun::USED        ? 1
                          : r.state() == v1::OccupancyRun::PREEMPTIBLE ? 2
                                                                       : 3),
                      (r.iova() - seg.iova()) / ps, r.length() / ps});
    }
    std::printf("segment %u  %s  %s  freelist %u  numa %d%s  (1 cell = %s)\n",
                seg.id(), Hex(seg.iova()).c_str(),
                HumanBytes(seg.bytes()).c_str(), seg.freelist(),
                seg.numa_node(), seg.draining() ? "  draining" : "",
                HumanBytes(per_cell * ps).c_str());
    std::fputs(DrawCells(Cells(runs, pages, per_cell), width, ascii).c_str(),
               stdout);
  }
  std::fputs(MapLegend(ascii).c_str(), stdout);
  return 0;
}

uint32_t SegmentId(const Args& a, bool* ok) {
  uint32_t id = 0;
  *ok = a.pos.size() == 3 && absl::SimpleAtoi(a.pos[2], &id);
  return id;
}

int SegmentList(const Ctx& c, const Args&) {
  v1::ListSegmentsResponse resp;
  auto admin = c.Admin();
  if (auto s = ListAll(
          c, v1::ListSegmentsRequest(),
          [&](grpc::ClientContext* ctx, const v1::ListSegmentsRequest& r,
              v1::ListSegmentsResponse* page) {
            return admin->ListSegments(ctx, r, page);
          },
          &resp);
      !s.ok()) {
    return Fail(s);
  }
  if (c.json) {
    PrintJson(resp);
  } else {
    PrintSegments(resp.segments());
  }
  return 0;
}

int SegmentChange(const Ctx& c, const Args& a) {
  bool ok;
  v1::SegmentRequest req;
  req.set_segment_id(SegmentId(a, &ok));
  if (!ok)
    return Usage(absl::StrCat("segment ", a.pos[1], " takes one segment id"));
  auto ctx = c.Call();
  if (a.pos[1] == "remove") {
    v1::RemoveSegmentResponse resp;
    if (auto s = c.Admin()->RemoveSegment(ctx.get(), req, &resp); !s.ok())
      return Fail(s);
    if (c.json) {
      PrintJson(resp);
    } else {
      std::printf("segment %u removed\n", req.segment_id());
    }
    return 0;
  }
  v1::SegmentResponse resp;
  const grpc::Status s = a.pos[1] == "drain"
                             ? c.Admin()->DrainSegment(ctx.get(), req, &resp)
                             : c.Admin()->UndrainSegment(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  return ShowSegment(c, resp);
}

int SegmentAdd(const Ctx& c, const Args& a) {
  v1::AddSegmentRequest req;
  auto bytes = ParseBytes(a.Get("--bytes"));
  if (!a.Has("--bytes") || !bytes.ok())
    return Usage("segment add needs --bytes SIZE");
  req.set_bytes(*bytes);
  uint32_t fl = 0;
  int32_t numa = 0;
  if (a.Has("--freelist") && !absl::SimpleAtoi(a.Get("--freelist"), &fl)) {
    return Usage("--freelist takes a number");
  }
  if (a.Has("--numa") && !absl::SimpleAtoi(a.Get("--numa"), &numa)) {
    return Usage("--numa takes a number");
  }
  req.set_freelist(fl);
  req.set_numa_node(numa);
  v1::SegmentResponse resp;
  auto ctx = c.Call();
  if (auto s = c.Admin()->AddSegment(ctx.get(), req, &resp); !s.ok())
    return Fail(s);
  return ShowSegment(c, resp);
}

int LeaseList(const Ctx& c, const Args& a) {
  v1::ListLeasesResponse resp;
  grpc::Status s;
  if (a.Has("--all") || a.Has("--tenant")) {
    v1::AdminListLeasesRequest req;
    req.set_tenant(a.Get("--tenant"));
    auto admin = c.Admin();
    s = ListAll(
        c, req,
        [&](grpc::ClientContext* ctx, const v1::AdminListLeasesRequest& r,
            v1::ListLeasesResponse* page) {
          return admin->ListLeases(ctx, r, page);
        },
        &resp);
  } else {
    auto pool = c.Pool();
    s = ListAll(
        c, v1::ListLeasesRequest(),
        [&](grpc::ClientContext* ctx, const v1::ListLeasesRequest& r,
            v1::ListLeasesResponse* page) {
          return pool->ListLeases(ctx, r, page);
        },
        &resp);
  }
  if (!s.ok()) return Fail(s);
  if (c.json) {
    PrintJson(resp);
  } else {
    PrintLeases(resp.leases());
  }
  return 0;
}

int LeaseOne(const Ctx& c, const Args& a) {
  if (a.pos.size() != 3)
    return Usage(absl::StrCat("lease ", a.pos[1], " takes one lease id"));
  const std::string& verb = a.pos[1];
  auto ctx = c.Call();
  v1::Lease lease;
  grpc::Status s;
  if (verb == "get") {
    v1::GetLeaseRequest req;
    req.set_lease_id(a.pos[2]);
    v1::GetLeaseResponse resp;
    s = c.Pool()->GetLease(ctx.get(), req, &resp);
    if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
        s.error_code() == grpc::StatusCode::NOT_FOUND) {
      // An admin sees any lease, live or quarantined, with its backing.
      auto admin_ctx = c.Call();
      v1::GetLeaseResponse admin;
      if (c.Admin()->GetLease(admin_ctx.get(), req, &admin).ok()) {
        s = grpc::Status::OK;
        resp = admin;
      }
    }
    lease = resp.lease();
  } else if (verb == "renew") {
    v1::RenewRequest req;
    req.set_lease_id(a.pos[2]);
    if (a.Has("--ttl")) {
      auto ms = ParseMillis(a.Get("--ttl"));
      if (!ms.ok()) return Usage(std::string(ms.status().message()));
      req.set_ttl_seconds(static_cast<uint32_t>(*ms / 1000));
    }
    v1::RenewResponse resp;
    s = c.Pool()->Renew(ctx.get(), req, &resp);
    lease = resp.lease();
  } else {
    v1::RevokeLeaseRequest req;
    req.set_lease_id(a.pos[2]);
    req.set_reason(a.Get("--reason"));
    v1::RevokeLeaseResponse resp;
    s = c.Admin()->RevokeLease(ctx.get(), req, &resp);
    lease = resp.lease();
  }
  if (!s.ok()) return Fail(s);
  if (c.json) {
    PrintJson(lease);
  } else {
    if (verb == "revoke") std::printf("revoked:\n");
    PrintLease(lease);
  }
  return 0;
}

int Release(const Ctx& c, const Args& a) {
  if (a.pos.size() != 2) return Usage("release takes one lease id");
  v1::ReleaseRequest req;
  req.set_lease_id(a.pos[1]);
  v1::ReleaseResponse resp;
  auto ctx = c.Call();
  if (auto s = c.Pool()->Release(ctx.get(), req, &resp); !s.ok())
    return Fail(s);
  if (c.json) {
    PrintJson(resp);
  } else {
    std::printf("%s %s\n", a.pos[1].c_str(),
                resp.released() ? "released" : "was already released");
  }
  return 0;
}

int TenantList(const Ctx& c, const Args&) {
  v1::ListTenantsResponse resp;
  auto admin = c.Admin();
  if (auto s = ListAll(
          c, v1::ListTenantsRequest(),
          [&](grpc::ClientContext* ctx, const v1::ListTenantsRequest& r,
              v1::ListTenantsResponse* page) {
            return admin->ListTenants(ctx, r, page);
          },
          &resp);
      !s.ok()) {
    return Fail(s);
  }
  if (c.json) {
    PrintJson(resp);
    return 0;
  }
  Table t({"NAME", "ROLES", "MAX BYTES", "MAX LEASES", "BYTES", "LEASES"});
  for (const auto& tn : resp.tenants()) {
    t.Add({tn.name(), absl::StrJoin(tn.roles(), ","),
           tn.limits().max_bytes() ? HumanBytes(tn.limits().max_bytes())
                                   : "unlimited",
           tn.limits().max_leases() ? absl::StrCat(tn.limits().max_leases())
                                    : "unlimited",
           HumanBytes(tn.bytes()), absl::StrCat(tn.leases())});
  }
  std::fputs(t.Render().c_str(), stdout);
  return 0;
}

int TenantSetLimits(const Ctx& c, const Args& a) {
  if (a.pos.size() != 3)
    return Usage("tenant set-limits takes one tenant name");
  v1::SetTenantLimitsRequest req;
  req.set_tenant(a.pos[2]);
  if (a.Has("--max-bytes")) {
    auto b = ParseBytes(a.Get("--max-bytes"));
    if (!b.ok()) return Usage(std::string(b.status().message()));
    req.mutable_limits()->set_max_bytes(*b);
  }
  uint32_t n = 0;
  if (a.Has("--max-leases") && !absl::SimpleAtoi(a.Get("--max-leases"), &n)) {
    return Usage("--max-leases takes a number");
  }
  req.mutable_limits()->set_max_leases(n);
  v1::SetTenantLimitsResponse resp;
  auto ctx = c.Call();
  if (auto s = c.Admin()->SetTenantLimits(ctx.get(), req, &resp); !s.ok())
    return Fail(s);
  if (c.json) {
    PrintJson(resp);
  } else {
    std::printf(
        "tenant %s: max %s, max %s\n", resp.tenant().name().c_str(),
        resp.tenant().limits().max_bytes()
            ? HumanBytes(resp.tenant().limits().max_bytes()).c_str()
            : "unlimited bytes",
        resp.tenant().limits().max_leases()
            ? absl::StrCat(resp.tenant().limits().max_leases(), " leases")
                  .c_str()
            : "unlimited leases");
  }
  return 0;
}

int Health(const Ctx& c, const Args&) {
  auto stub = grpc::health::v1::Health::NewStub(c.channel);
  grpc::health::v1::HealthCheckResponse resp;
  auto ctx = c.Call();
  if (auto s = stub->Check(ctx.get(), {}, &resp); !s.ok()) return Fail(s);
  if (c.json) {
    PrintJson(resp);
  } else {
    std::printf(
        "%s\n",
        grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status())
            .c_str());
  }
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? 0
             : kExitFailed;
}

// Stops `alloc` and `watch` on SIGINT/SIGTERM.
sigset_t BlockStopSignals() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &s, nullptr);
  return s;
}

int Watch(const Ctx& c, const Args&) {
  const sigset_t stop = BlockStopSignals();
  grpc::ClientContext ctx;
  if (!c.token.empty()) ctx.AddMetadata("authorization", "Bearer " + c.token);
  if (c.timeout_given)
    ctx.set_deadline(std::chrono::system_clock::now() + c.timeout);
  std::thread stopper([&] {
    int sig;
    sigwait(&stop, &sig);
    ctx.TryCancel();
  });
  auto reader = c.Pool()->Watch(&ctx, {});
  // The daemon sends the stream's initial metadata once the subscription
  // is live: from the header line on, no event is missed.
  reader->WaitForInitialMetadata();
  v1::LeaseEvent e;
  if (!c.json)
    std::printf("%-24s %-10s %-20s %s\n", "TIME", "KIND", "LEASE", "REASON");
  std::fflush(stdout);
  while (reader->Read(&e)) {
    if (c.json) {
      std::string out;
      google::protobuf::util::JsonPrintOptions o;
      o.preserve_proto_field_names = true;
      o.always_print_primitive_fields = true;
      (void)google::protobuf::util::MessageToJsonString(e, &out, o);
      std::printf("%s\n", out.c_str());
    } else {
      std::printf("%-24s %-10s %-20s %s\n",
                  absl::FormatTime("%Y-%m-%dT%H:%M:%E3S",
                                   absl::FromUnixMillis(e.unix_ms()),
                                   absl::LocalTimeZone())
                      .c_str(),
                  v1::LeaseEvent::Kind_Name(e.kind()).c_str(),
                  e.lease_id().c_str(), e.reason().c_str());
    }
    std::fflush(stdout);
  }
  const grpc::Status s = reader->Finish();
  pthread_kill(stopper.native_handle(), SIGTERM);
  stopper.join();
  if (s.error_code() == grpc::StatusCode::CANCELLED ||
      (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
       c.timeout_given)) {
    return 0;  // interrupted, or --timeout elapsed: a normal end
  }
  return s.ok() ? 0 : Fail(s);
}

int Alloc(const Ctx& c, const Args& a) {
  AllocateOptions o;
  auto bytes = ParseBytes(a.Get("--bytes"));
  if (!a.Has("--bytes") || !bytes.ok())
    return Usage("alloc needs --bytes SIZE");
  o.bytes = *bytes;
  for (auto [flag, field] :
       {std::pair{"--alignment", &o.alignment},
        std::pair{"--boundary", &o.boundary}, std::pair{"--low", &o.low},
        std::pair{"--high", &o.high}}) {
    if (!a.Has(flag)) continue;
    auto v = ParseBytes(a.Get(flag));
    if (!v.ok()) return Usage(absl::StrCat(flag, ": ", v.status().message()));
    *field = *v;
  }
  if (a.Has("--max-segments") &&
      !absl::SimpleAtoi(a.Get("--max-segments"), &o.max_segments)) {
    return Usage("--max-segments takes a number");
  }
  if (a.Has("--numa")) {
    int32_t n;
    if (!absl::SimpleAtoi(a.Get("--numa"), &n))
      return Usage("--numa takes a node number");
    o.numa_node = n;
  }
  o.numa_strict = a.Has("--numa-strict");
  o.preemptible = a.Has("--preemptible");
  o.may_reclaim = a.Has("--reclaim");
  o.label = a.Get("--label", "physpoolctl alloc");
  o.device = a.Get("--device", "");
  for (auto [flag, ms] : {std::pair{"--wait", &o.wait_timeout}}) {
    if (!a.Has(flag)) continue;
    auto v = ParseMillis(a.Get(flag));
    if (!v.ok()) return Usage(std::string(v.status().message()));
    *ms = std::chrono::milliseconds(*v);
  }
  if (a.Has("--ttl")) {
    auto v = ParseMillis(a.Get("--ttl"));
    if (!v.ok()) return Usage(std::string(v.status().message()));
    o.ttl = std::chrono::seconds(*v / 1000);
  }
  const sigset_t stop = BlockStopSignals();
  ClientOptions opts = c.opts;
  // The library sends one request id for this invocation and retries
  // UNAVAILABLE / DEADLINE_EXCEEDED with it; say so on stderr.
  opts.on_allocate_retry = [](const AllocateRetry& r) {
    std::fprintf(stderr,
                 "physpoolctl: alloc attempt %d: %s; retrying in %lld ms "
                 "(request %s)\n",
                 r.attempt, r.error.ToString().c_str(),
                 static_cast<long long>(r.pause.count()), r.request_id.c_str());
  };
  auto client = Client::Connect(opts);
  if (!client.ok()) return Fail(client.status());
  std::atomic<bool> revoked{false};
  auto region =
      (*client)->Allocate(o, [&](const std::string& id, const std::string& kind,
                                 const std::string& reason, int64_t) {
        std::fprintf(stderr, "Error: lease %s %s: %s\n", id.c_str(),
                     kind.c_str(), reason.c_str());
        revoked = true;
        kill(getpid(), SIGTERM);
      });
  if (!region.ok()) return Fail(region.status());
  // Print the lease as the daemon has it.
  v1::GetLeaseRequest req;
  req.set_lease_id((*region)->lease_id());
  v1::GetLeaseResponse resp;
  auto ctx = c.Call();
  if (auto s = c.Pool()->GetLease(ctx.get(), req, &resp); !s.ok())
    return Fail(s);
  // The request id this invocation sent (a daemon without request ids
  // does not echo it).
  resp.mutable_lease()->set_request_id((*region)->request_id());
  if (c.json) {
    PrintJson(resp.lease());
  } else {
    PrintLease(resp.lease());
    std::printf("holding it (renewed in the background); Ctrl-C releases it\n");
  }
  std::fflush(stdout);
  int sig;
  sigwait(&stop, &sig);
  region->reset();  // releases the lease
  return revoked ? kExitFailed : 0;
}

// --- The command table -------------------------------------------------------

struct Command {
  std::string noun, verb;  // verb "" for one-word commands
  int nargs;               // positional arguments after the command words
  std::set<std::string> flags;
  std::string help;
  std::function<int(const Ctx&, const Args&)> run;
};

const std::vector<Command>& Commands() {
  static const auto* kCommands = new std::vector<Command>{
      {"pool",
       "status",
       0,
       {},
       R"(physpoolctl pool status
  Each segment's usage as a bar, with used, scrubbing and free sizes, and the
  caller's tenant usage and limits.
  Example: physpoolctl pool status -o json | jq .free_bytes)",
       PoolStatus},
      {"pool",
       "map",
       0,
       {"--segment", "--width", "--ascii", "--page-size"},
       R"(physpoolctl pool map [--segment ID] [--width CELLS] [--ascii] [--page-size RUNS]   (admin)
  Draws each segment's occupancy: one cell per N pages (at most 4 rows a
  segment), shaded by the state holding most of its pages, with a legend.
  Reads every page of the occupancy (--page-size: runs per page, 0 = the
  daemon's default); -o json prints the segments merged across pages.
  Example: physpoolctl pool map --width 100 --ascii)",
       PoolMap},
      {"segment",
       "list",
       0,
       {"--page-size"},
       "physpoolctl segment list [--page-size N]   (admin)\n"
       "  Every segment (all pages; --page-size: per request, 0 = the "
       "daemon's\n  default).\n  Example: physpoolctl segment list -o json",
       SegmentList},
      {"segment",
       "drain",
       1,
       {},
       R"(physpoolctl segment drain ID   (admin)
  No new allocations in the segment; frees still work.
  Example: physpoolctl segment drain 2)",
       SegmentChange},
      {"segment",
       "undrain",
       1,
       {},
       "physpoolctl segment undrain ID   (admin)\n  Example: physpoolctl "
       "segment undrain 2",
       SegmentChange},
      {"segment",
       "add",
       0,
       {"--bytes", "--freelist", "--numa"},
       R"(physpoolctl segment add --bytes SIZE [--freelist N] [--numa N]   (admin)
  Example: physpoolctl segment add --bytes 256MiB --freelist 1)",
       SegmentAdd},
      {"segment",
       "remove",
       1,
       {},
       R"(physpoolctl segment remove ID   (admin)
  Only when no page of it is allocated (drain it first).
  Example: physpoolctl segment remove 4)",
       SegmentChange},
      {"lease",
       "list",
       0,
       {"--all", "--tenant", "--page-size"},
       R"(physpoolctl lease list [--all | --tenant NAME] [--page-size N]
  Your leases; --all or --tenant (admin) for everyone's or one tenant's.
  Reads every page (--page-size: leases per request, 0 = the daemon's
  default).
  Example: physpoolctl lease list --tenant trainer -o json)",
       LeaseList},
      {"lease",
       "get",
       1,
       {},
       "physpoolctl lease get ID\n  One of your leases with its runs (each "
       "one's offset in the lease's view), or, ended, its quarantine and "
       "who still maps it. An admin sees any tenant's lease and the segment "
       "files behind it.\n  Example: physpoolctl lease get l-2989f08544ac69d2 "
       "-o "
       "json",
       LeaseOne},
      {"lease",
       "renew",
       1,
       {"--ttl"},
       "physpoolctl lease renew ID [--ttl 60s]\n  Example: physpoolctl lease "
       "renew l-2989f08544ac69d2 --ttl 5m",
       LeaseOne},
      {"lease",
       "revoke",
       1,
       {"--reason"},
       R"(physpoolctl lease revoke ID [--reason TEXT]   (admin)
  Ends the lease; its owner gets a REVOKED event; the memory is zeroed.
  Example: physpoolctl lease revoke l-2989f08544ac69d2 --reason "device reset")",
       LeaseOne},
      {"tenant",
       "list",
       0,
       {"--page-size"},
       "physpoolctl tenant list [--page-size N]   (admin)\n"
       "  Every tenant (all pages; --page-size: per request, 0 = the "
       "daemon's\n  default).\n  Example: physpoolctl tenant list -o json",
       TenantList},
      {"tenant",
       "set-limits",
       1,
       {"--max-bytes", "--max-leases"},
       R"(physpoolctl tenant set-limits NAME [--max-bytes SIZE] [--max-leases N]   (admin)
  0 or absent means unlimited. Example: physpoolctl tenant set-limits trainer --max-bytes 8GiB)",
       TenantSetLimits},
      {"alloc",
       "",
       0,
       {"--bytes", "--alignment", "--boundary", "--max-segments", "--low",
        "--high", "--numa", "--numa-strict", "--preemptible", "--reclaim",
        "--wait", "--ttl", "--label", "--device"},
       R"(physpoolctl alloc --bytes SIZE [--alignment SIZE] [--boundary SIZE] [--max-segments N]
                 [--low IOVA] [--high IOVA] [--numa N [--numa-strict]] [--preemptible]
                 [--reclaim] [--wait 10s] [--ttl 60s] [--label TEXT] [--device BDF]
  Allocates a region, maps it, prints it and holds it (renewing) until
  interrupted; then releases it. For testing a device. The request carries
  a request id (printed with the lease) and is retried with it on
  UNAVAILABLE and DEADLINE_EXCEEDED (5 attempts; a --wait request only on
  UNAVAILABLE), each retry noted on stderr.
  --max-segments 0 (the default) means any number of runs, except with
  --alignment above one page or --boundary: then one run, unless N >= 2.
  Example: physpoolctl alloc --bytes 2MiB --alignment 2MiB --max-segments 1)",
       Alloc},
      {"release",
       "",
       1,
       {},
       "physpoolctl release ID\n  Releases one of your leases (idempotent).\n  "
       "Example: physpoolctl release l-2989f08544ac69d2",
       Release},
      {"watch",
       "",
       0,
       {},
       R"(physpoolctl watch [--timeout 60s]
  Streams your lease events (EXPIRING, EXPIRED, REVOKED, PREEMPTED) until
  interrupted (or until --timeout, if given).
  Example: physpoolctl watch -o json)",
       Watch},
      {"health",
       "",
       0,
       {},
       "physpoolctl health\n  SERVING (exit 0) or NOT_SERVING (exit 1).\n  "
       "Example: physpoolctl --endpoint 127.0.0.1:7600 health",
       Health},
  };
  return *kCommands;
}

const std::set<std::string>& KnownFlags() {
  static const auto* known = [] {
    auto* s = new std::set<std::string>(kGlobalFlags);
    for (const Command& c : Commands())
      s->insert(c.flags.begin(), c.flags.end());
    return s;
  }();
  return *known;
}

constexpr char kGlobalHelp[] = R"(Global flags:
  --endpoint ADDR     unix:/path or host:port (env PHYSPOOL_ENDPOINT; default:
                      the daemon's default socket)
  --token TOKEN       bearer token (env PHYSPOOL_TOKEN)
  --token-file FILE   file holding the token (env PHYSPOOL_TOKEN_FILE)
  --tls-ca FILE       TCP with TLS: the server's CA
  --tls-cert FILE, --tls-key FILE   a client certificate (mTLS)
  --timeout DURATION  per call, e.g. 5s (default 10s)
  -o, --output FORMAT table (default) or json
Exit codes: 0 ok, 1 failed, 2 usage, 3 unavailable, 4 unauthenticated or
permission denied, 5 not found, 6 resource exhausted, 7 deadline exceeded.
)";

}  // namespace

std::string CtlUsage() {
  std::string s = "Commands (physpoolctl COMMAND --help for details):\n";
  for (const Command& c : Commands()) {
    s += absl::StrCat("  ", c.noun, c.verb.empty() ? "" : " ", c.verb, "\n");
  }
  s += "  simulate FILE|-\n";
  return s + kGlobalHelp;
}

int RunCtl(const std::vector<std::string>& argv) {
  auto args = Parse(argv);
  if (!args.ok()) return Usage(std::string(args.status().message()));
  const Command* cmd = nullptr;
  for (const Command& c : Commands()) {
    if (!args->pos.empty() && args->pos[0] == c.noun &&
        (c.verb.empty() || (args->pos.size() > 1 && args->pos[1] == c.verb))) {
      cmd = &c;
    }
  }
  if (cmd == nullptr) {
    return Usage(absl::StrCat("unknown command \"",
                              absl::StrJoin(args->pos, " "), "\"\n\n",
                              CtlUsage()));
  }
  if (args->Has("--help")) {
    std::printf("%s\n\n%s", cmd->help.c_str(), kGlobalHelp);
    return 0;
  }
  for (const auto& [flag, value] : args->flags) {
    if (!kGlobalFlags.count(flag) && !cmd->flags.count(flag)) {
      return Usage(absl::StrCat("unknown flag ", flag, " for \"", cmd->noun,
                                cmd->verb.empty() ? "" : " ", cmd->verb,
                                "\" (see --help)"));
    }
  }
  const size_t words = cmd->verb.empty() ? 1 : 2;
  if (args->pos.size() != words + cmd->nargs) {
    return Usage(absl::StrCat("\"", cmd->noun, cmd->verb.empty() ? "" : " ",
                              cmd->verb, "\" takes ", cmd->nargs, " argument",
                              cmd->nargs == 1 ? "" : "s", " (see --help)"));
  }
  Ctx c;
  c.opts.endpoint = args->Get("--endpoint");
  c.opts.token = args->Get("--token");
  c.opts.token_file = args->Get("--token-file");
  c.opts.tls_ca = args->Get("--tls-ca");
  c.opts.tls_cert = args->Get("--tls-cert");
  c.opts.tls_key = args->Get("--tls-key");
  if (args->Has("--timeout")) {
    auto ms = ParseMillis(args->Get("--timeout"));
    if (!ms.ok() || *ms <= 0)
      return Usage("--timeout takes a duration such as 5s");
    c.timeout = std::chrono::milliseconds(*ms);
    c.timeout_given = true;
  }
  c.opts.timeout = c.timeout;
  if (args->Has("--page-size") &&
      (!absl::SimpleAtoi(args->Get("--page-size"), &c.page_size) ||
       c.page_size < 0)) {
    return Usage(
        "--page-size takes a number: items per page, 0 = the daemon's "
        "default");
  }
  const std::string out = args->Get("--output", "table");
  if (out != "table" && out != "json") return Usage("-o takes table or json");
  c.json = out == "json";
  auto token = client_internal::ResolveToken(c.opts);
  if (!token.ok()) return Usage(std::string(token.status().message()));
  c.token = *token;
  // alloc and watch end on SIGINT/SIGTERM, taken by sigwait: block them
  // before gRPC starts any thread, so that no thread dies of them.
  if (cmd->noun == "alloc" || cmd->noun == "watch") BlockStopSignals();
  auto channel = client_internal::OpenChannel(c.opts);
  if (!channel.ok()) return Usage(std::string(channel.status().message()));
  c.channel = *channel;
  return cmd->run(c, *args);
}

}  // namespace physpool::cli
