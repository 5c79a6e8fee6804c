// SPDX-License-Identifier: Apache-2.0
#include "dra/claim_state.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "util/file.h"

namespace physpool::dra {

using nlohmann::json;

const char* PhaseName(ClaimRecord::Phase p) {
  switch (p) {
    case ClaimRecord::Phase::kPreparing:
      return "preparing";
    case ClaimRecord::Phase::kPrepared:
      return "prepared";
    case ClaimRecord::Phase::kUnpreparing:
      return "unpreparing";
  }
  return "?";
}

absl::StatusOr<ClaimState> ClaimState::Load(std::string path) {
  absl::StatusOr<std::string> text = ReadFileToString(path, "claim state");
  if (absl::IsNotFound(text.status())) return ClaimState(path);  // none yet
  if (!text.ok()) return text.status();
  return Parse(std::move(path), *text);
}

absl::StatusOr<ClaimState> ClaimState::Parse(std::string path,
                                             const std::string& text) {
  ClaimState st(path);
  auto damaged = [&](const std::string& why) {
    return absl::FailedPreconditionError(absl::StrCat(
        "claim state ", path, " is damaged: ", why,
        " (move it away to start empty; the cleanup pass then releases the "
        "driver's leases whose claims are gone)"));
  };
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("claims") ||
      !j["claims"].is_object()) {
    return damaged("not a JSON object with \"claims\"");
  }
  for (const auto& [uid, c] : j["claims"].items()) {
    ClaimRecord r;
    r.uid = uid;
    try {
      r.ns = c.at("namespace").get<std::string>();
      r.name = c.at("name").get<std::string>();
      r.token = c.at("token").get<std::string>();
      const std::string phase = c.at("phase").get<std::string>();
      if (phase == "preparing") {
        r.phase = ClaimRecord::Phase::kPreparing;
      } else if (phase == "prepared") {
        r.phase = ClaimRecord::Phase::kPrepared;
      } else if (phase == "unpreparing") {
        r.phase = ClaimRecord::Phase::kUnpreparing;
      } else {
        return damaged(absl::StrCat("claim ", uid, ": phase ", phase));
      }
      for (const json& x : c.at("results")) {
        r.results.push_back({x.at("request").get<std::string>(),
                             x.at("device").get<std::string>(),
                             x.at("bytes").get<uint64_t>(),
                             x.at("request_id").get<std::string>(),
                             x.at("lease").get<std::string>()});
      }
    } catch (const json::exception& e) {
      return damaged(absl::StrCat("claim ", uid, ": ", e.what()));
    }
    st.claims_[uid] = std::move(r);
  }
  return st;
}

const ClaimRecord* ClaimState::Find(const std::string& uid) const {
  auto it = claims_.find(uid);
  return it == claims_.end() ? nullptr : &it->second;
}

absl::Status ClaimState::Put(const ClaimRecord& r) {
  std::map<std::string, ClaimRecord> next = claims_;
  next[r.uid] = r;
  if (absl::Status s = Save(next); !s.ok()) return s;
  claims_ = std::move(next);
  return absl::OkStatus();
}

absl::Status ClaimState::Erase(const std::string& uid) {
  std::map<std::string, ClaimRecord> next = claims_;
  next.erase(uid);
  if (absl::Status s = Save(next); !s.ok()) return s;
  claims_ = std::move(next);
  return absl::OkStatus();
}

absl::Status ClaimState::Save(
    const std::map<std::string, ClaimRecord>& claims) const {
  json j = {{"claims", json::object()}};
  for (const auto& [uid, r] : claims) {
    json results = json::array();
    for (const ClaimResult& x : r.results) {
      results.push_back({{"request", x.request},
                         {"device", x.device},
                         {"bytes", x.bytes},
                         {"request_id", x.request_id},
                         {"lease", x.lease}});
    }
    j["claims"][uid] = {{"namespace", r.ns},
                        {"name", r.name},
                        {"phase", PhaseName(r.phase)},
                        {"token", r.token},
                        {"results", results}};
  }
  return WriteFileAtomically(path_, j.dump(1) + "\n", 0600);
}

}  // namespace physpool::dra
