// SPDX-License-Identifier: Apache-2.0
#include "dra/dma_config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "dra/quantity.h"

namespace physpool::dra {
namespace {

using nlohmann::json;

constexpr char kConfigApiVersion[] = "dma.physpool.io/v1";
constexpr char kConfigKind[] = "DmaConfig";

}  // namespace

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

absl::StatusOr<DmaConfig> ConfigFor(const json& allocation,
                                    const std::string& request,
                                    const std::string& driver) {
  // Class configs first, then the claim's: the later one wins.
  DmaConfig c;
  for (const char* source : {"FromClass", "FromClaim"}) {
    for (const json& cfg : allocation.value("config", json::array())) {
      if (cfg.value("source", "") != source) continue;
      // A result of a prioritized list is "<request>/<subrequest>"; a
      // config may name either.
      const json reqs = cfg.value("requests", json::array());
      const std::string parent = request.substr(0, request.find('/'));
      if (!reqs.empty() &&
          std::find(reqs.begin(), reqs.end(), request) == reqs.end() &&
          std::find(reqs.begin(), reqs.end(), parent) == reqs.end()) {
        continue;
      }
      const json opaque = cfg.value("opaque", json());
      if (!opaque.is_object() || opaque.value("driver", "") != driver) {
        continue;
      }
      if (absl::Status s = ApplyConfig(opaque.value("parameters", json()), &c);
          !s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("request ", request, ": ", s.message()));
      }
    }
  }
  return c;
}

}  // namespace physpool::dra
