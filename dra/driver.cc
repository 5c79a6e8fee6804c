// SPDX-License-Identifier: Apache-2.0
#include "dra/driver.h"

#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "dra/quantity.h"
#include "util/file.h"
#include "util/sha256.h"

namespace physpool::dra {
namespace {

using nlohmann::json;

constexpr char kLabelPrefix[] = "dra-claim=";
constexpr char kConfigApiVersion[] = "dma.physpool.io/v1";
constexpr char kConfigKind[] = "DmaConfig";

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    const ssize_t n = getrandom(raw.data() + got, bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
    // EINTR: again; getrandom never fails otherwise once the pool is up.
  }
  return absl::BytesToHexString(raw);
}

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

// The claim UID a lease label names ("" if it is not a claim's).
std::string UidOfLabel(const std::string& label) {
  if (!absl::StartsWith(label, kLabelPrefix)) return "";
  const std::string rest = label.substr(sizeof(kLabelPrefix) - 1);
  return rest.substr(0, rest.find(' '));
}

// The opaque parameters of a claim's or class's config for this driver.
struct DmaConfig {
  uint64_t alignment = 0, boundary = 0;
  uint32_t max_segments = 0;
  std::optional<bool> numa_strict;
};

absl::Status ApplyConfig(const json& params, DmaConfig* c) {
  auto bad = [](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("opaque config parameters: ", why));
  };
  if (!params.is_object()) return bad("not an object");
  if (params.value("apiVersion", "") != kConfigApiVersion ||
      params.value("kind", "") != kConfigKind) {
    return bad(absl::StrCat("want apiVersion \"", kConfigApiVersion,
                            "\" and kind \"", kConfigKind, "\""));
  }
  for (const auto& [k, v] : params.items()) {
    if (k == "apiVersion" || k == "kind") continue;
    if (k == "alignment" || k == "boundary") {
      absl::StatusOr<uint64_t> q =
          v.is_string() ? ParseQuantity(v.get<std::string>())
          : v.is_number_unsigned()
              ? absl::StatusOr<uint64_t>(v.get<uint64_t>())
              : absl::InvalidArgumentError("not a quantity");
      if (!q.ok()) return bad(absl::StrCat(k, ": ", q.status().message()));
      if (*q != 0 && (*q & (*q - 1)) != 0)
        return bad(absl::StrCat(k, " ", *q, " is not a power of two"));
      (k == "alignment" ? c->alignment : c->boundary) = *q;
    } else if (k == "maxSegments") {
      if (!v.is_number_unsigned() || v.get<uint64_t>() > 1u << 20)
        return bad("maxSegments must be an integer in 0..1048576");
      c->max_segments = v.get<uint32_t>();
    } else if (k == "numaStrict") {
      if (!v.is_boolean()) return bad("numaStrict must be a boolean");
      c->numa_strict = v.get<bool>();
    } else {
      return bad(absl::StrCat(
          "unknown field \"", k,
          "\" (known: alignment, boundary, maxSegments, numaStrict)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

void CrashPoint(const char* step) {
  const char* at = std::getenv("PHYSPOOL_DRA_CRASH_AT");
  if (at != nullptr && std::strcmp(at, step) == 0) {
    fprintf(stderr, "physpool-dra: crash point %s: SIGKILL\n", step);
    fflush(stderr);
    kill(getpid(), SIGKILL);
  }
}

Driver::Driver(DriverOptions options, std::shared_ptr<grpc::Channel> physpool,
               std::unique_ptr<KubeClient> kube, ClaimState state)
    : opts_(std::move(options)),
      pool_(v1::Pool::NewStub(std::move(physpool))),
      kube_(std::move(kube)),
      state_(std::move(state)) {}

std::unique_ptr<grpc::ClientContext> Driver::Context() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!opts_.physpool_token.empty())
    ctx->AddMetadata("authorization", "Bearer " + opts_.physpool_token);
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  ctx->set_wait_for_ready(true);  // physpoold restarting: wait, within 20 s
  return ctx;
}

std::string Driver::SliceName() const {
  std::string n = absl::StrCat(opts_.node_name, "-", opts_.driver_name);
  for (char& c : n) {
    if (c == '.' || c == '_') c = '-';
  }
  return n;
}

absl::StatusOr<json> Driver::GetClaim(const std::string& ns,
                                      const std::string& name) {
  absl::StatusOr<KubeResponse> r =
      kube_->Do("GET", absl::StrCat("/apis/resource.k8s.io/v1/namespaces/", ns,
                                    "/resourceclaims/", name));
  if (!r.ok()) return r.status();
  if (r->code == 404 && (r->body.value("reason", "") != "NotFound" ||
                         r->body.value("/details/kind"_json_pointer,
                                       std::string()) != "resourceclaims")) {
    // Not the API server saying the claim is gone (resource.k8s.io/v1 not
    // served, a proxy, a wrong --kube-api): never a reason to unprepare.
    return absl::UnavailableError(absl::StrCat(
        "GET ResourceClaim ", ns, "/", name,
        ": HTTP 404 without a NotFound Status for resourceclaims (is "
        "resource.k8s.io/v1 served at --kube-api?)"));
  }
  if (absl::Status s =
          KubeClient::Check(*r, absl::StrCat("ResourceClaim ", ns, "/", name));
      !s.ok()) {
    return s;
  }
  return r->body;
}

absl::StatusOr<std::map<std::string, std::string>> Driver::ListLeases() {
  std::map<std::string, std::string> out;
  v1::ListLeasesRequest req;
  for (;;) {
    v1::ListLeasesResponse resp;
    auto ctx = Context();
    if (absl::Status s =
            FromGrpc(pool_->ListLeases(ctx.get(), req, &resp), "ListLeases");
        !s.ok()) {
      return s;
    }
    for (const v1::Lease& l : resp.leases()) out[l.id()] = l.label();
    if (resp.next_page_token().empty()) return out;
    req.set_page_token(resp.next_page_token());
  }
}

absl::Status Driver::ReleaseLease(const std::string& id) {
  v1::ReleaseRequest req;
  req.set_lease_id(id);
  v1::ReleaseResponse resp;
  auto ctx = Context();
  const grpc::Status s = pool_->Release(ctx.get(), req, &resp);
  // Gone already (released, expired, revoked): nothing to do.
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) return absl::OkStatus();
  return FromGrpc(s, absl::StrCat("Release ", id));
}

absl::Status Driver::WriteClaimFiles(const ClaimRecord& r) {
  const std::string dir = absl::StrCat(opts_.plugin_dir, "/claims/", r.uid);
  if (absl::Status s = MakeDirs(dir, 0755); !s.ok()) return s;
  chmod(dir.c_str(), 0755);
  // Readable by the container's user, whoever it is; the directory is
  // mounted into the claim's containers only.
  if (absl::Status s =
          WriteFileAtomically(dir + "/token", r.token + "\n", 0444);
      !s.ok()) {
    return s;
  }
  std::vector<std::string> leases;
  for (const ClaimResult& x : r.results)
    leases.push_back(absl::StrCat(x.request, "=", x.lease));
  json env = json::array({
      absl::StrCat("PHYSPOOL_ENDPOINT=unix:", opts_.socket_dir, "/",
                   opts_.socket_name),
      absl::StrCat("PHYSPOOL_TOKEN_FILE=", opts_.container_claim_dir, "/token"),
      absl::StrCat("PHYSPOOL_LEASE=",
                   r.results.empty() ? "" : r.results[0].lease),
      absl::StrCat("PHYSPOOL_LEASES=", absl::StrJoin(leases, ",")),
      absl::StrCat("PHYSPOOL_CLAIM=", r.ns, "/", r.name, "/", r.uid),
  });
  // Both mounts read-only: a unix socket is connected to through a
  // read-only mount, and the container can then neither remove nor
  // replace the daemon's sockets, nor its claim's token.
  json spec = {
      {"cdiVersion", "0.6.0"},
      {"kind", CdiKind()},
      {"devices",
       json::array(
           {{{"name", r.uid},
             {"containerEdits",
              {{"env", env},
               {"mounts",
                json::array(
                    {{{"hostPath", opts_.socket_dir},
                      {"containerPath", opts_.socket_dir},
                      {"options", json::array({"rbind", "ro"})}},
                     {{"hostPath", dir},
                      {"containerPath", opts_.container_claim_dir},
                      {"options", json::array({"rbind", "ro"})}}})}}}}})}};
  if (absl::Status s = MakeDirs(opts_.cdi_dir, 0755); !s.ok()) return s;
  // The temporary is "<name>.json.tmp": CDI reads only *.json and *.yaml.
  return WriteFileAtomically(
      absl::StrCat(opts_.cdi_dir, "/physpool-", r.uid, ".json"),
      spec.dump(2) + "\n", 0644);
}

void Driver::RemoveClaimFiles(const std::string& uid) {
  std::error_code ec;
  std::filesystem::remove(
      absl::StrCat(opts_.cdi_dir, "/physpool-", uid, ".json"), ec);
  std::filesystem::remove_all(absl::StrCat(opts_.plugin_dir, "/claims/", uid),
                              ec);
}

std::vector<PreparedDevice> Driver::DevicesOf(const ClaimRecord& r) const {
  std::vector<PreparedDevice> out;
  for (const ClaimResult& x : r.results) {
    out.push_back({{x.request},
                   opts_.node_name,
                   x.device,
                   {absl::StrCat(CdiKind(), "=", r.uid)}});
  }
  return out;
}

absl::StatusOr<std::vector<PreparedDevice>> Driver::Prepare(
    const std::string& ns, const std::string& uid, const std::string& name) {
  if (ns.empty() || uid.empty() || name.empty()) {
    return absl::InvalidArgumentError(
        "a claim needs its namespace, uid and name");
  }
  absl::MutexLock l(&mu_);
  std::optional<ClaimRecord> rec;
  if (const ClaimRecord* r = state_.Find(uid)) rec = *r;
  if (rec && rec->phase == ClaimRecord::Phase::kUnpreparing) {
    // Its Unprepare was interrupted: finish it, then prepare afresh.
    if (absl::Status s = UnprepareLocked(uid); !s.ok()) return s;
    rec.reset();
  }
  if (rec && rec->phase == ClaimRecord::Phase::kPrepared) {
    bool alive = true;
    for (ClaimResult& x : rec->results) {
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
                ns.c_str(), name.c_str(), uid.c_str(), x.lease.c_str(),
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
      if (absl::Status s = WriteClaimFiles(*rec); !s.ok()) return s;
      return DevicesOf(*rec);
    }
    rec->phase = ClaimRecord::Phase::kPreparing;
  }

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
  absl::StatusOr<PoolFacts> facts = ReadPool();
  if (!facts.ok()) return facts.status();
  // The results for this driver, with their size and config.
  std::vector<ClaimResult> results;
  std::vector<DmaConfig> configs;
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
    if (facts->devices.count(x.device) == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("request ", x.request, ": device \"", x.device,
                       "\" is not in this node's ResourceSlice (it has: ",
                       absl::StrJoin(facts->devices, ", ",
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
    // Class configs first, then the claim's: the later one wins.
    DmaConfig c;
    for (const char* source : {"FromClass", "FromClaim"}) {
      for (const json& cfg : alloc.value("config", json::array())) {
        if (cfg.value("source", "") != source) continue;
        // A result of a prioritized list is "<request>/<subrequest>"; a
        // config may name either.
        const json reqs = cfg.value("requests", json::array());
        const std::string parent = x.request.substr(0, x.request.find('/'));
        if (!reqs.empty() &&
            std::find(reqs.begin(), reqs.end(), x.request) == reqs.end() &&
            std::find(reqs.begin(), reqs.end(), parent) == reqs.end()) {
          continue;
        }
        const json opaque = cfg.value("opaque", json());
        if (!opaque.is_object() ||
            opaque.value("driver", "") != opts_.driver_name) {
          continue;
        }
        if (absl::Status s =
                ApplyConfig(opaque.value("parameters", json()), &c);
            !s.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("request ", x.request, ": ", s.message()));
        }
      }
    }
    results.push_back(std::move(x));
    configs.push_back(c);
  }
  if (results.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ResourceClaim ", ns, "/", name,
                     " has no device of driver ", opts_.driver_name));
  }
  if (!rec) {
    rec.emplace();
    rec->uid = uid;
    rec->ns = ns;
    rec->name = name;
    rec->token = RandomHex(32);
    for (ClaimResult& x : results) x.request_id = RandomHex(16);
    rec->results = results;
  } else {
    // A retry: the recorded request ids (the allocation of a UID does not
    // change), leases kept where they live.
    if (rec->results.size() != results.size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "claim ", uid, "'s allocation differs from the one recorded"));
    }
  }
  if (absl::Status s = state_.Put(*rec); !s.ok()) return s;
  CrashPoint("prepare-recorded");

  const std::string sha = Sha256Hex(rec->token);
  for (size_t i = 0; i < rec->results.size(); ++i) {
    ClaimResult& x = rec->results[i];
    const DmaConfig& c = configs[i];
    const PoolFacts::Dev& dev = facts->devices.at(x.device);
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
    // physpoold keeps 256 bytes of label; the UID comes first.
    req.set_label(
        absl::StrCat(kLabelPrefix, uid, " ", ns, "/", name, " ", x.request)
            .substr(0, 256));
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
  if (absl::Status s = WriteClaimFiles(*rec); !s.ok()) return s;
  CrashPoint("prepare-cdi-written");
  rec->phase = ClaimRecord::Phase::kPrepared;
  if (absl::Status s = state_.Put(*rec); !s.ok()) return s;
  CrashPoint("prepare-committed");
  return DevicesOf(*rec);
}

absl::Status Driver::Unprepare(const std::string& uid) {
  absl::MutexLock l(&mu_);
  return UnprepareLocked(uid);
}

absl::Status Driver::UnprepareLocked(const std::string& uid) {
  const ClaimRecord* found = state_.Find(uid);
  if (found == nullptr) return absl::OkStatus();  // unknown: nothing to do
  ClaimRecord rec = *found;
  if (rec.phase != ClaimRecord::Phase::kUnpreparing) {
    rec.phase = ClaimRecord::Phase::kUnpreparing;
    if (absl::Status s = state_.Put(rec); !s.ok()) return s;
  }
  CrashPoint("unprepare-recorded");
  // The recorded leases, and any granted before the record named them (a
  // kill -9 between Allocate and the prepared record): by their label. Only
  // a result without its lease needs the list of every lease; a lease the
  // record does not name beside a named one is the cleanup pass's.
  std::set<std::string> leases;
  bool unnamed = false;
  for (const ClaimResult& x : rec.results) {
    if (!x.lease.empty()) leases.insert(x.lease);
    unnamed |= x.lease.empty();
  }
  if (unnamed) {
    absl::StatusOr<std::map<std::string, std::string>> all = ListLeases();
    if (!all.ok()) return all.status();
    for (const auto& [id, label] : *all) {
      if (UidOfLabel(label) == uid) leases.insert(id);
    }
  }
  for (const std::string& id : leases) {
    if (absl::Status s = ReleaseLease(id); !s.ok()) return s;
  }
  CrashPoint("unprepare-released");
  RemoveClaimFiles(uid);
  CrashPoint("unprepare-cdi-removed");
  if (absl::Status s = state_.Erase(uid); !s.ok()) return s;
  CrashPoint("unprepare-done");
  return absl::OkStatus();
}

absl::Status Driver::Cleanup() {
  absl::MutexLock l(&mu_);
  absl::Status first;  // the first failure; the pass goes on past it
  auto note = [&first](const absl::Status& s) {
    if (s.ok()) return;
    fprintf(stderr, "physpool-dra: cleanup: %s\n",
            std::string(s.message()).c_str());
    if (first.ok()) first = s;
  };
  absl::StatusOr<std::map<std::string, std::string>> all = ListLeases();
  if (!all.ok()) return all.status();
  std::vector<ClaimRecord> records;
  for (const auto& [uid, r] : state_.claims()) records.push_back(r);
  for (ClaimRecord& r : records) {
    std::string why;
    if (r.phase == ClaimRecord::Phase::kUnpreparing) {
      why = "its Unprepare was interrupted";
    } else {
      absl::StatusOr<json> claim = GetClaim(r.ns, r.name);
      if (absl::IsNotFound(claim.status())) {
        why = "the ResourceClaim is gone";
      } else if (!claim.ok()) {
        // The API server cannot say: keep it, the next pass asks again.
        note(claim.status());
        continue;
      } else if (claim->value("/metadata/uid"_json_pointer, std::string()) !=
                 r.uid) {
        why = "the ResourceClaim of that name has another UID";
      } else {
        bool here = false;
        for (const json& x :
             claim->value("/status/allocation/devices/results"_json_pointer,
                          json::array())) {
          here |= x.value("driver", "") == opts_.driver_name &&
                  x.value("pool", "") == opts_.node_name;
        }
        if (!here) why = "the ResourceClaim is no longer allocated here";
      }
    }
    if (!why.empty()) {
      fprintf(stderr,
              "physpool-dra: cleanup: unpreparing claim %s/%s (%s): %s\n",
              r.ns.c_str(), r.name.c_str(), r.uid.c_str(), why.c_str());
      note(UnprepareLocked(r.uid));
      continue;
    }
    if (r.phase != ClaimRecord::Phase::kPrepared) continue;
    // A prepared claim whose lease ended (expired while nobody renewed it,
    // revoked, preempted) is prepared no longer: kubelet's next prepare
    // makes a new lease, under a new request id.
    bool lost = false;
    for (ClaimResult& x : r.results) {
      if (all->count(x.lease) != 0) continue;
      fprintf(stderr,
              "physpool-dra: cleanup: claim %s/%s (%s): lease %s is gone; "
              "the claim needs preparing again\n",
              r.ns.c_str(), r.name.c_str(), r.uid.c_str(), x.lease.c_str());
      x.lease.clear();
      x.request_id = RandomHex(16);
      lost = true;
    }
    if (lost) {
      r.phase = ClaimRecord::Phase::kPreparing;
      note(state_.Put(r));
    }
  }
  // Leases no record explains: a claim's lease whose claim is not
  // recorded, or a prepared claim's lease it does not name.
  all = ListLeases();
  if (!all.ok()) return all.status();
  for (const auto& [id, label] : *all) {
    const std::string uid = UidOfLabel(label);
    if (uid.empty()) continue;  // not a claim's
    const ClaimRecord* r = state_.Find(uid);
    bool orphan = r == nullptr;
    if (r != nullptr && r->phase == ClaimRecord::Phase::kPrepared) {
      orphan = true;
      for (const ClaimResult& x : r->results) orphan &= x.lease != id;
    }
    if (!orphan) continue;
    fprintf(stderr,
            "physpool-dra: cleanup: releasing lease %s (%s): no claim record "
            "names it\n",
            id.c_str(), label.c_str());
    note(ReleaseLease(id));
  }
  return first;
}

void Driver::RenewAll() {
  absl::MutexLock l(&mu_);
  std::set<std::string> leases;
  bool preparing = false;
  for (const auto& [uid, r] : state_.claims()) {
    if (r.phase == ClaimRecord::Phase::kUnpreparing) continue;
    preparing |= r.phase == ClaimRecord::Phase::kPreparing;
    for (const ClaimResult& x : r.results) {
      if (!x.lease.empty()) leases.insert(x.lease);
    }
  }
  if (preparing) {
    // Granted, but a kill -9 came before the record named it: found by its
    // label, it lives until kubelet's retry adopts it (or a cleanup pass
    // unprepares its claim).
    if (auto all = ListLeases(); all.ok()) {
      for (const auto& [id, label] : *all) {
        const ClaimRecord* r = state_.Find(UidOfLabel(label));
        if (r != nullptr && r->phase == ClaimRecord::Phase::kPreparing)
          leases.insert(id);
      }
    }
  }
  for (const std::string& id : leases) {
    v1::RenewRequest req;
    req.set_lease_id(id);
    req.set_ttl_seconds(opts_.lease_ttl_seconds);
    v1::RenewResponse resp;
    auto ctx = Context();
    if (grpc::Status s = pool_->Renew(ctx.get(), req, &resp); !s.ok()) {
      // Gone: the next cleanup pass has its claim prepared again.
      fprintf(stderr, "physpool-dra: renewing lease %s: %s\n", id.c_str(),
              s.error_message().c_str());
    }
  }
}

absl::StatusOr<Driver::PoolFacts> Driver::ReadPool() {
  v1::GetPoolInfoResponse info;
  auto ctx = Context();
  if (absl::Status s =
          FromGrpc(pool_->GetPoolInfo(ctx.get(), {}, &info), "GetPoolInfo");
      !s.ok()) {
    return s;
  }
  PoolFacts f;
  f.page_size = info.page_size();
  for (const v1::Device& d : info.devices()) {
    if (d.dma_limit() != 0 && (f.dma_limit == 0 || d.dma_limit() < f.dma_limit))
      f.dma_limit = d.dma_limit();
  }
  bool all_numa = info.segments_size() > 0;
  for (const v1::SegmentInfo& s : info.segments())
    all_numa &= s.numa_node() >= 0;
  // What this driver's claims hold per device: the rest of the used bytes
  // are other tenants', not the scheduler's to hand out.
  std::map<std::string, uint64_t> ours;
  for (const auto& [uid, r] : state_.claims()) {
    for (const ClaimResult& x : r.results) ours[x.device] += x.bytes;
  }
  std::map<std::string, uint64_t> used;
  for (const v1::SegmentInfo& s : info.segments()) {
    const std::string name =
        all_numa ? absl::StrCat("numa", s.numa_node()) : "pool";
    PoolFacts::Dev& d = f.devices[name];
    d.numa = all_numa ? s.numa_node() : -1;
    if (s.draining()) continue;  // no new allocations there
    d.capacity += s.bytes();
    d.free += s.free_bytes();
    d.largest = std::max(d.largest, s.largest_free_run_bytes());
    // Memory being zeroed is not free yet either.
    used[name] += s.used_bytes() + s.scrubbing_bytes();
  }
  for (auto& [name, d] : f.devices) {
    const uint64_t mine = ours[name];
    const uint64_t others = used[name] > mine ? used[name] - mine : 0;
    d.capacity = d.capacity > others ? d.capacity - others : 0;
    if (f.page_size != 0) d.capacity -= d.capacity % f.page_size;
  }
  return f;
}

json Driver::DevicesForTest() {
  absl::MutexLock l(&mu_);
  return devices_;
}

absl::Status Driver::Publish(bool force) {
  absl::MutexLock l(&mu_);
  absl::StatusOr<PoolFacts> f = ReadPool();
  if (!f.ok()) return f.status();
  json devices = json::array();
  const std::string page = absl::StrCat(f->page_size);
  for (const auto& [name, d] : f->devices) {
    json attrs = {{"pageSize", {{"int", f->page_size}}},
                  {"freeBytes", {{"int", d.free}}},
                  {"largestFreeRun", {{"int", d.largest}}},
                  {"dmaLimit", {{"int", f->dma_limit}}}};
    if (d.numa >= 0) attrs["numaNode"] = {{"int", d.numa}};
    devices.push_back(
        {{"name", name},
         {"allowMultipleAllocations", true},
         {"attributes", attrs},
         {"capacity",
          {{"memory",
            {{"value", FormatQuantity(d.capacity)},
             {"requestPolicy",
              {{"default", page},
               {"validRange", {{"min", page}, {"step", page}}}}}}}}}});
  }
  devices_ = devices;
  if (!force && devices == published_) return absl::OkStatus();
  const std::string base = "/apis/resource.k8s.io/v1/resourceslices";
  if (slice_version_.empty()) {
    // The slices an earlier run published: adopt ours, delete the rest.
    absl::StatusOr<KubeResponse> list =
        kube_->Do("GET", absl::StrCat(base, "?fieldSelector=spec.nodeName%3D",
                                      opts_.node_name, "%2Cspec.driver%3D",
                                      opts_.driver_name));
    if (!list.ok()) return list.status();
    if (absl::Status s = KubeClient::Check(*list, "listing ResourceSlices");
        !s.ok()) {
      return s;
    }
    for (const json& item : list->body.value("items", json::array())) {
      const std::string n =
          item.value("/metadata/name"_json_pointer, std::string());
      if (n == SliceName()) {
        slice_version_ =
            item.value("/metadata/resourceVersion"_json_pointer, std::string());
        generation_ = std::max<int64_t>(
            generation_,
            item.value("/spec/pool/generation"_json_pointer, int64_t{0}));
        continue;
      }
      absl::StatusOr<KubeResponse> del =
          kube_->Do("DELETE", absl::StrCat(base, "/", n));
      if (del.ok() && del->code != 404) {
        if (absl::Status s = KubeClient::Check(*del, "deleting slice " + n);
            !s.ok()) {
          return s;
        }
      }
    }
  }
  if (node_uid_.empty()) {
    absl::StatusOr<KubeResponse> node =
        kube_->Do("GET", absl::StrCat("/api/v1/nodes/", opts_.node_name));
    if (node.ok() && node->code == 200) {
      node_uid_ = node->body.value("/metadata/uid"_json_pointer, std::string());
    } else {
      const std::string why = node.ok() ? absl::StrCat("HTTP ", node->code)
                                        : std::string(node.status().message());
      fprintf(stderr,
              "physpool-dra: node %s: %s; the slice has no owner (it stays "
              "if the node object is deleted)\n",
              opts_.node_name.c_str(), why.c_str());
    }
  }
  // A new generation when what it says changed (not for a forced rewrite).
  if (devices != published_ || generation_ == 0) ++generation_;
  json slice = {{"apiVersion", "resource.k8s.io/v1"},
                {"kind", "ResourceSlice"},
                {"metadata", {{"name", SliceName()}}},
                {"spec",
                 {{"driver", opts_.driver_name},
                  {"nodeName", opts_.node_name},
                  {"pool",
                   {{"name", opts_.node_name},
                    {"generation", generation_},
                    {"resourceSliceCount", 1}}},
                  {"devices", devices}}}};
  if (!node_uid_.empty()) {
    slice["metadata"]["ownerReferences"] =
        json::array({{{"apiVersion", "v1"},
                      {"kind", "Node"},
                      {"name", opts_.node_name},
                      {"uid", node_uid_},
                      {"controller", true}}});
  }
  absl::StatusOr<KubeResponse> r;
  if (!slice_version_.empty()) {
    slice["metadata"]["resourceVersion"] = slice_version_;
    r = kube_->Do("PUT", absl::StrCat(base, "/", SliceName()), &slice);
    if (r.ok() && (r->code == 404 || r->code == 409)) {
      // Deleted, or changed by someone else: start over from a list, at
      // the next tick.
      slice_version_.clear();
      published_ = json();
      return absl::AbortedError(absl::StrCat("ResourceSlice ", SliceName(),
                                             ": HTTP ", r->code,
                                             "; published again next time"));
    }
  } else {
    r = kube_->Do("POST", base, &slice);
  }
  if (!r.ok()) return r.status();
  if (absl::Status s =
          KubeClient::Check(*r, "writing ResourceSlice " + SliceName());
      !s.ok()) {
    return s;
  }
  slice_version_ =
      r->body.value("/metadata/resourceVersion"_json_pointer, std::string());
  published_ = devices;
  return absl::OkStatus();
}

}  // namespace physpool::dra
