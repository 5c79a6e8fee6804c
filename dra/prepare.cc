// SPDX-License-Identifier: Apache-2.0
// Driver::Prepare (NodePrepareResources for one claim) in its phases;
// driver.h says what each does. The rest of the Driver is in driver.cc.
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dra/claim_files.h"
#include "dra/claim_lease.h"
#include "dra/driver.h"
#include "dra/quantity.h"
#include "util/sha256.h"

namespace physpool::dra {

using nlohmann::json;

absl::StatusOr<std::vector<PreparedDevice>> Driver::Prepare(
    const std::string& ns, const std::string& uid, const std::string& name) {
  if (ns.empty() || uid.empty() || name.empty()) {
    return absl::InvalidArgumentError(
        "a claim needs its namespace, uid and name");
  }
  absl::MutexLock l(&mu_);
  std::optional<ClaimRecord> rec;
  if (const ClaimRecord* r = state_.Find(uid)) rec = *r;
  absl::StatusOr<std::optional<std::vector<PreparedDevice>>> again =
      ResumeRecord(uid, &rec);
  if (!again.ok()) return again.status();
  if (again->has_value()) return **again;
  absl::StatusOr<Allocation> alloc = ReadAllocation(ns, uid, name);
  if (!alloc.ok()) return alloc.status();
  if (absl::Status s = RecordPreparing(ns, uid, name, *alloc, &rec); !s.ok())
    return s;
  if (absl::Status s = AllocateLeases(ns, uid, name, *alloc, &*rec); !s.ok())
    return s;
  return CommitPrepared(&*rec);
}

absl::StatusOr<std::optional<std::vector<PreparedDevice>>> Driver::ResumeRecord(
    const std::string& uid, std::optional<ClaimRecord>* rec) {
  if (*rec && (*rec)->phase == ClaimRecord::Phase::kUnpreparing) {
    // Its Unprepare was interrupted: finish it, then prepare afresh.
    if (absl::Status s = UnprepareLocked(uid); !s.ok()) return s;
    rec->reset();
  }
  if (!*rec || (*rec)->phase != ClaimRecord::Phase::kPrepared)
    return std::nullopt;
  ClaimRecord& r = **rec;
  bool alive = true;
  for (ClaimResult& x : r.results) {
    v1::GetLeaseRequest req;
    req.set_lease_id(x.lease);
    v1::GetLeaseResponse resp;
    auto ctx = Context();
    const grpc::Status s = pool_->GetLease(ctx.get(), req, &resp);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
      // It ended while nobody renewed it: a new lease, a new request id.
      fprintf(stderr,
              "physpool-dra: claim %s/%s (%s): lease %s is gone (%s); "
              "allocating a new one\n",
              r.ns.c_str(), r.name.c_str(), uid.c_str(), x.lease.c_str(),
              s.error_message().c_str());
      x.lease.clear();
      x.request_id = RandomHex(16);
      alive = false;
    } else if (!s.ok()) {
      return FromGrpc(s, absl::StrCat("GetLease ", x.lease));
    }
  }
  if (alive) {
    // Idempotent: the same devices; the files again if they went.
    if (absl::Status s = WriteClaimFiles(opts_, r); !s.ok()) return s;
    return std::optional<std::vector<PreparedDevice>>(DevicesOf(r));
  }
  r.phase = ClaimRecord::Phase::kPreparing;
  return std::nullopt;
}

absl::StatusOr<Driver::Allocation> Driver::ReadAllocation(
    const std::string& ns, const std::string& uid, const std::string& name) {
  absl::StatusOr<json> claim = GetClaim(ns, name);
  if (!claim.ok()) return claim.status();
  const std::string got_uid =
      claim->value("/metadata/uid"_json_pointer, std::string());
  if (got_uid != uid) {
    return absl::FailedPreconditionError(absl::StrCat(
        "ResourceClaim ", ns, "/", name, " has UID \"", got_uid,
        "\", kubelet asked for \"", uid, "\" (deleted and created again?)"));
  }
  const json alloc =
      claim->value("/status/allocation/devices"_json_pointer, json());
  if (!alloc.is_object()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ResourceClaim ", ns, "/", name,
                     " is not allocated (no "
                     "status.allocation.devices)"));
  }
  Allocation out;
  absl::StatusOr<PoolFacts> facts = ReadPool();
  if (!facts.ok()) return facts.status();
  out.facts = *std::move(facts);
  // The results for this driver, with their size and config.
  for (const json& r : alloc.value("results", json::array())) {
    if (r.value("driver", "") != opts_.driver_name) continue;
    ClaimResult x;
    x.request = r.value("request", "");
    x.device = r.value("device", "");
    const std::string pool = r.value("pool", "");
    if (pool != opts_.node_name) {
      return absl::FailedPreconditionError(
          absl::StrCat("request ", x.request, " was allocated from pool \"",
                       pool, "\"; this is node ", opts_.node_name));
    }
    if (out.facts.devices.count(x.device) == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("request ", x.request, ": device \"", x.device,
                       "\" is not in this node's ResourceSlice (it has: ",
                       absl::StrJoin(out.facts.devices, ", ",
                                     [](std::string* o, const auto& d) {
                                       absl::StrAppend(o, d.first);
                                     }),
                       ")"));
    }
    const json mem = r.value("/consumedCapacity/memory"_json_pointer, json());
    if (!mem.is_string()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "request ", x.request,
          ": no consumedCapacity.memory in the allocation (the cluster needs "
          "the DRAConsumableCapacity feature; docs/kubernetes.md)"));
    }
    absl::StatusOr<uint64_t> bytes = ParseQuantity(mem.get<std::string>());
    if (!bytes.ok()) return bytes.status();
    if (*bytes == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("request ", x.request, " consumes no memory"));
    }
    x.bytes = *bytes;
    absl::StatusOr<DmaConfig> c =
        ConfigFor(alloc, x.request, opts_.driver_name);
    if (!c.ok()) return c.status();
    out.results.push_back(std::move(x));
    out.configs.push_back(*c);
  }
  if (out.results.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ResourceClaim ", ns, "/", name,
                     " has no device of driver ", opts_.driver_name));
  }
  return out;
}

absl::Status Driver::RecordPreparing(const std::string& ns,
                                     const std::string& uid,
                                     const std::string& name,
                                     const Allocation& alloc,
                                     std::optional<ClaimRecord>* rec) {
  if (!*rec) {
    rec->emplace();
    ClaimRecord& r = **rec;
    r.uid = uid;
    r.ns = ns;
    r.name = name;
    r.token = RandomHex(32);
    r.results = alloc.results;
    for (ClaimResult& x : r.results) x.request_id = RandomHex(16);
  } else if ((*rec)->results.size() != alloc.results.size()) {
    // A retry: the recorded request ids (the allocation of a UID does not
    // change), leases kept where they live.
    return absl::FailedPreconditionError(absl::StrCat(
        "claim ", uid, "'s allocation differs from the one recorded"));
  }
  if (absl::Status s = state_.Put(**rec); !s.ok()) return s;
  CrashPoint("prepare-recorded");
  return absl::OkStatus();
}

absl::Status Driver::AllocateLeases(const std::string& ns,
                                    const std::string& uid,
                                    const std::string& name,
                                    const Allocation& alloc, ClaimRecord* rec) {
  const std::string sha = Sha256Hex(rec->token);
  for (size_t i = 0; i < rec->results.size(); ++i) {
    ClaimResult& x = rec->results[i];
    const DmaConfig& c = alloc.configs[i];
    const PoolFacts::Dev& dev = alloc.facts.devices.at(x.device);
    v1::AllocateRequest req;
    req.set_bytes(x.bytes);
    req.set_alignment(c.alignment);
    req.set_boundary(c.boundary);
    req.set_max_segments(c.max_segments);
    if (dev.numa >= 0) {
      req.set_numa_node(dev.numa);
      // The scheduler counted the bytes against this NUMA node's device.
      req.set_numa_strict(c.numa_strict.value_or(true));
    }
    req.set_ttl_seconds(opts_.lease_ttl_seconds);
    req.set_label(ClaimLeaseLabel(uid, ns, name, x.request));
    req.set_request_id(x.request_id);
    req.set_access_token_sha256(sha);
    v1::AllocateResponse resp;
    auto ctx = Context();
    if (absl::Status s =
            FromGrpc(pool_->Allocate(ctx.get(), req, &resp),
                     absl::StrCat("Allocate for request ", x.request));
        !s.ok()) {
      // UNAVAILABLE or DEADLINE_EXCEEDED: the lease may exist, and a retry
      // with the same request id gets it. Any other answer says no lease
      // lives under that id (physpoold would repeat an error it remembers,
      // or say that the id's lease ended): the retry asks anew.
      if (!absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s)) {
        x.request_id = RandomHex(16);
        if (absl::Status p = state_.Put(*rec); !p.ok()) return p;
      }
      return s;
    }
    x.lease = resp.lease().id();
  }
  CrashPoint("prepare-allocated");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PreparedDevice>> Driver::CommitPrepared(
    ClaimRecord* rec) {
  if (absl::Status s = WriteClaimFiles(opts_, *rec); !s.ok()) return s;
  CrashPoint("prepare-cdi-written");
  rec->phase = ClaimRecord::Phase::kPrepared;
  if (absl::Status s = state_.Put(*rec); !s.ok()) return s;
  CrashPoint("prepare-committed");
  return DevicesOf(*rec);
}

}  // namespace physpool::dra
