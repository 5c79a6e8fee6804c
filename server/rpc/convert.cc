// SPDX-License-Identifier: Apache-2.0
#include "server/rpc/convert.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/rpc/page_token.h"
#include "util/sha256.h"
#include "util/status_macros.h"

namespace physpool::server {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

ServerUnaryReactor* Done(CallbackServerContext* ctx, const absl::Status& s) {
  ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(ToGrpc(s));
  return r;
}

int64_t UnixMillis(absl::Time t) { return absl::ToUnixMillis(t); }

void ToProto(const LeaseInfo& l, v1::Lease* out, View view) {
  out->set_id(l.id);
  out->set_tenant(l.tenant);
  uint64_t view_offset = 0;
  for (const LeaseRun& r : l.runs) {
    v1::Run* p = out->add_runs();
    p->set_iova(r.iova);
    p->set_length(r.bytes);
    if (view == View::kAdmin) {
      p->set_backing_path(r.backing_path);
      p->set_backing_offset(r.backing_offset);
    }
    p->set_segment_id(r.segment_id);
    p->set_view_offset(view_offset);
    view_offset += r.bytes;
  }
  if (l.quarantine) {
    v1::Quarantine* q = out->mutable_quarantine();
    q->set_since_unix_ms(absl::ToUnixMillis(l.quarantine->since));
    for (const Holder& h : l.quarantine->holders) {
      if (static_cast<size_t>(q->holders_size()) == kMaxHoldersShown) {
        q->set_more_holders(q->more_holders() + 1);
        continue;
      }
      v1::Holder* o = q->add_holders();
      o->set_pid(h.pid);
      o->set_uid(h.uid);
      o->set_command(h.command);
      o->set_fd(h.has_fd);
      o->set_mapped(h.maps);
      o->set_uninspected(h.uninspected);
      o->set_references(h.references);
    }
  }
  out->set_bytes(l.bytes);
  out->set_preemptible(l.preemptible);
  out->set_expires_unix_ms(UnixMillis(l.expires));
  out->set_ttl_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(l.ttl)));
  out->set_path(l.path);
  out->set_label(l.label);
  out->set_request_id(l.request_id);
  out->set_has_access_token(!l.access_sha256.empty());
}

void ToProto(const SegmentView& s, uint64_t ps, v1::SegmentInfo* out) {
  out->set_id(s.info.id);
  out->set_iova(s.info.spec.iova);
  out->set_bytes(s.info.avail.pages.value * ps);
  out->set_freelist(s.info.spec.freelist);
  out->set_numa_node(s.info.spec.numa);
  out->set_draining(s.info.draining);
  out->set_free_bytes(s.info.free_pages.value * ps);
  out->set_used_bytes((s.info.used_pages.value - s.scrubbing_pages) * ps);
  out->set_scrubbing_bytes(s.scrubbing_pages * ps);
  out->set_largest_free_run_bytes(s.info.largest_free_run.value * ps);
  out->set_backing_path(s.backing_path);
}

void ToProto(const Tenant& t, const TenantUsage& u, v1::TenantInfo* out) {
  out->set_name(t.name);
  for (const auto& r : RoleNames(t.roles)) out->add_roles(r);
  out->mutable_limits()->set_max_bytes(t.limits.max_bytes);
  out->mutable_limits()->set_max_leases(t.limits.max_leases);
  out->set_bytes(u.bytes);
  out->set_leases(u.leases);
}

absl::Status CheckRequestId(const std::string& id) {
  if (id.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id is ", id.size(), " bytes; at most 128"));
  }
  for (char c : id) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          "request_id must be printable ASCII without spaces (a UUID, say)");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLeaseId(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("lease_id is required");
  if (id.size() > 128)
    return absl::InvalidArgumentError("lease_id is too long");
  return absl::OkStatus();
}

namespace {
// Clips [*low, *high) to the DMA limit of `device`.
absl::Status ApplyDeviceLimit(const SourceFacts& source,
                              const std::string& device, uint64_t* low,
                              uint64_t* high) {
  for (const vfio::VfioDevice& d : source.devices) {
    if (d.bdf != device) continue;
    if (d.dma_limit == 0) return absl::OkStatus();
    if (*low >= d.dma_limit) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the window starts at ", *low, ", above the DMA limit ", d.dma_limit,
          " of device ", device, ": it could not reach the region"));
    }
    *high = std::min(*high, d.dma_limit);
    return absl::OkStatus();
  }
  std::string known;
  for (const auto& d : source.devices) absl::StrAppend(&known, " ", d.bdf);
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown device \"", device.substr(0, 64), "\" (the ", source.name,
      " source drives:", known.empty() ? " none" : known, ")"));
}

}  // namespace

absl::StatusOr<AllocateParams> ToParams(const v1::AllocateRequest& r,
                                        absl::Duration max_ttl,
                                        const SourceFacts& source) {
  AllocateParams p;
  if (r.bytes() == 0) return absl::InvalidArgumentError("bytes must be > 0");
  p.req.bytes = r.bytes();
  p.req.low = r.low();
  p.req.high = r.high() == 0 ? pglist::kMaxIova : r.high();
  if (!r.device().empty()) {
    RETURN_IF_ERROR(
        ApplyDeviceLimit(source, r.device(), &p.req.low, &p.req.high));
    p.device = r.device();
  }
  p.req.alignment = r.alignment();
  p.req.boundary = r.boundary();
  p.req.max_segments = r.max_segments();
  p.req.preemptible = r.preemptible();
  if (r.has_numa_node()) {
    if (r.numa_node() < 0)
      return absl::InvalidArgumentError("numa_node must be >= 0");
    p.req.numa = r.numa_node();
  } else if (r.numa_strict()) {
    return absl::InvalidArgumentError("numa_strict needs numa_node");
  }
  p.numa_strict = r.numa_strict();
  p.may_wait = r.may_wait();
  p.may_reclaim = r.may_reclaim();
  if (absl::Seconds(r.ttl_seconds()) > max_ttl) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ttl_seconds ", r.ttl_seconds(), " is above the maximum of ",
        absl::ToInt64Seconds(max_ttl)));
  }
  p.ttl = absl::Seconds(r.ttl_seconds());
  if (r.label().size() > 256)
    return absl::InvalidArgumentError("label is longer than 256 bytes");
  p.label = r.label();
  RETURN_IF_ERROR(CheckRequestId(r.request_id()));
  p.request_id = r.request_id();
  const std::string& sha = r.access_token_sha256();
  if (!sha.empty() && !IsSha256Hex(sha)) {
    return absl::InvalidArgumentError(
        "access_token_sha256 must be 64 lowercase hex digits (the SHA-256 "
        "of a random token of at least 128 bits)");
  }
  p.access_sha256 = sha;
  return p;
}

v1::LeaseEvent ToProto(const LeaseEventInfo& e) {
  v1::LeaseEvent out;
  out.set_kind(static_cast<v1::LeaseEvent::Kind>(e.kind));
  out.set_lease_id(e.lease_id);
  out.set_reason(e.reason);
  out.set_unix_ms(UnixMillis(e.at));
  if (e.deadline != absl::InfinitePast())
    out.set_deadline_unix_ms(UnixMillis(e.deadline));
  return out;
}

size_t LeaseAnswerBound(uint32_t runs, size_t max_path) {
  // A run: iova, length, backing_offset, view_offset (a tag and up to ten
  // bytes each), segment_id (1 + 5), the path (a tag, its length, the
  // bytes), and the run's own tag and length (1 + 3).
  const size_t per_run = 4 * 11 + 6 + (1 + 3 + max_path) + 4;
  // The rest of a lease at its largest (id, tenant name and request id of
  // at most 128 bytes, a label of 256, the path, numbers, the listed
  // holders), the lease's tag and length in the answer, and a page token.
  const size_t holder = 2 * 11 + (2 + 16) + 4 + 3;
  const size_t rest = 3 * (3 + 128) + (3 + 256) + 16 + 5 * 11 +
                      kMaxHoldersShown * holder + 3 * 11 + 8 + 1024;
  return rest + static_cast<size_t>(runs) * per_run;
}

uint32_t MaxRunsPerAnswer(size_t max_path) {
  const size_t per_run =
      LeaseAnswerBound(1, max_path) - LeaseAnswerBound(0, max_path);
  return static_cast<uint32_t>(
      (kMaxAnswerBytes - LeaseAnswerBound(0, max_path)) / per_run);
}

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

ServerUnaryReactor* Later(CallbackServerContext* ctx,
                          std::function<void(ServerUnaryReactor*)> start) {
  ServerUnaryReactor* r = ctx->DefaultReactor();
  start(r);
  return r;
}

// One page of leases in id order (of `tenant`, or all).
absl::Status LeasePage(PoolManager* manager, absl::string_view list,
                       std::optional<std::string> tenant, int32_t page_size,
                       const std::string& token, View view,
                       v1::ListLeasesResponse* resp) {
  ASSIGN_OR_RETURN(const size_t n, PageSize(page_size, kDefaultPage, kMaxPage));
  const std::string filter = tenant.value_or("");
  std::string after;
  if (!token.empty()) {
    ASSIGN_OR_RETURN(after, DecodePageToken(token, list, filter));
  }
  std::vector<LeaseInfo> leases = manager->Leases(tenant, after, n + 1);
  size_t bytes = 0;
  for (size_t i = 0; i < leases.size(); ++i) {
    v1::Lease one;
    ToProto(leases[i], &one, view);
    bytes += one.ByteSizeLong() + 8;
    if (i == n || (i > 0 && bytes > kPageBytes)) {
      resp->set_next_page_token(
          EncodePageToken(list, filter, leases[i - 1].id));
      break;
    }
    *resp->add_leases() = std::move(one);
  }
  return absl::OkStatus();
}

}  // namespace physpool::server
