// SPDX-License-Identifier: Apache-2.0
#include "dra/cleanup.h"

#include <cstdio>
#include <vector>

#include "dra/claim_lease.h"

namespace physpool::dra {
namespace {

using nlohmann::json;

// Logs a failure; keeps the first in `*first`.
void Note(const absl::Status& s, absl::Status* first) {
  if (s.ok()) return;
  fprintf(stderr, "physpool-dra: cleanup: %s\n",
          std::string(s.message()).c_str());
  if (first->ok()) *first = s;
}

}  // namespace

CleanupPass::CleanupPass(std::string driver_name, std::string node_name,
                         Ops ops)
    : driver_name_(std::move(driver_name)),
      node_name_(std::move(node_name)),
      ops_(std::move(ops)) {}

std::string CleanupPass::WhyUnprepare(const ClaimRecord& r,
                                      absl::Status* unknown) const {
  if (r.phase == ClaimRecord::Phase::kUnpreparing)
    return "its Unprepare was interrupted";
  absl::StatusOr<json> claim = ops_.get_claim(r.ns, r.name);
  if (absl::IsNotFound(claim.status())) return "the ResourceClaim is gone";
  if (!claim.ok()) {
    // The API server cannot say: keep it, the next pass asks again.
    *unknown = claim.status();
    return "";
  }
  if (claim->value("/metadata/uid"_json_pointer, std::string()) != r.uid)
    return "the ResourceClaim of that name has another UID";
  for (const json& x : claim->value(
           "/status/allocation/devices/results"_json_pointer, json::array())) {
    if (x.value("driver", "") == driver_name_ &&
        x.value("pool", "") == node_name_) {
      return "";
    }
  }
  return "the ResourceClaim is no longer allocated here";
}

bool CleanupPass::ForgetLostLeases(
    const std::map<std::string, std::string>& leases, ClaimRecord* r) const {
  // A prepared claim whose lease ended (expired while nobody renewed it,
  // revoked, preempted) is prepared no longer: kubelet's next prepare
  // makes a new lease, under a new request id.
  bool lost = false;
  for (ClaimResult& x : r->results) {
    if (leases.count(x.lease) != 0) continue;
    fprintf(stderr,
            "physpool-dra: cleanup: claim %s/%s (%s): lease %s is gone; "
            "the claim needs preparing again\n",
            r->ns.c_str(), r->name.c_str(), r->uid.c_str(), x.lease.c_str());
    x.lease.clear();
    x.request_id = RandomHex(16);
    lost = true;
  }
  return lost;
}

absl::Status CleanupPass::ReleaseOrphans(
    const ClaimState& state, const std::map<std::string, std::string>& leases,
    absl::Status* first) const {
  // Leases no record explains: a claim's lease whose claim is not
  // recorded, or a prepared claim's lease it does not name.
  for (const auto& [id, label] : leases) {
    const std::string uid = UidOfLabel(label);
    if (uid.empty()) continue;  // not a claim's
    const ClaimRecord* r = state.Find(uid);
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
    Note(ops_.release_lease(id), first);
  }
  return *first;
}

absl::Status CleanupPass::Run(ClaimState* state) {
  absl::Status first;  // the first failure; the pass goes on past it
  absl::StatusOr<std::map<std::string, std::string>> all = ops_.list_leases();
  if (!all.ok()) return all.status();
  std::vector<ClaimRecord> records;
  for (const auto& [uid, r] : state->claims()) records.push_back(r);
  for (ClaimRecord& r : records) {
    absl::Status unknown;
    const std::string why = WhyUnprepare(r, &unknown);
    if (!unknown.ok()) {
      Note(unknown, &first);
      continue;
    }
    if (!why.empty()) {
      fprintf(stderr,
              "physpool-dra: cleanup: unpreparing claim %s/%s (%s): %s\n",
              r.ns.c_str(), r.name.c_str(), r.uid.c_str(), why.c_str());
      Note(ops_.unprepare(r.uid), &first);
      continue;
    }
    if (r.phase != ClaimRecord::Phase::kPrepared) continue;
    if (ForgetLostLeases(*all, &r)) {
      r.phase = ClaimRecord::Phase::kPreparing;
      Note(state->Put(r), &first);
    }
  }
  all = ops_.list_leases();
  if (!all.ok()) return all.status();
  return ReleaseOrphans(*state, *all, &first);
}

}  // namespace physpool::dra
