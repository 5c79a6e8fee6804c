// SPDX-License-Identifier: Apache-2.0
#include "server/lease/request_fingerprint.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "util/sha256.h"

namespace physpool::server {
namespace {

// Appends `field` as "<length>:<bytes>", so that no two sequences of fields
// encode alike.
void Field(std::string* out, absl::string_view field) {
  absl::StrAppend(out, field.size(), ":", field);
}

std::string LegacyFingerprint(const AllocateParams& p) {
  const pglist::Request& r = p.req;
  return Sha256Hex(
             absl::StrCat(r.bytes, "|", r.low, "|", r.high, "|", r.alignment,
                          "|", r.boundary, "|", r.max_segments, "|", r.numa,
                          "|", p.numa_strict, "|", r.preemptible, "|", p.label,
                          p.access_sha256.empty() ? "" : "|", p.access_sha256))
      .substr(0, 16);
}

}  // namespace

std::string RequestFingerprint(const AllocateParams& p) {
  const pglist::Request& r = p.req;
  std::string text;
  for (uint64_t v : {r.bytes, r.low, r.high, r.alignment, r.boundary,
                     static_cast<uint64_t>(r.max_segments)}) {
    Field(&text, absl::StrCat(v));
  }
  Field(&text, absl::StrCat(r.numa));
  Field(&text, p.numa_strict ? "strict" : "");
  Field(&text, r.preemptible ? "preemptible" : "");
  Field(&text, p.may_reclaim ? "reclaim" : "");
  Field(&text, absl::StrCat(absl::ToInt64Seconds(p.ttl)));
  Field(&text, p.device);
  Field(&text, p.label);
  Field(&text, p.access_sha256);
  return absl::StrCat("2:", Sha256Hex(text));
}

bool SameRequest(const std::string& stored, const AllocateParams& p) {
  if (stored.size() == 16) return stored == LegacyFingerprint(p);
  return stored == RequestFingerprint(p);
}

}  // namespace physpool::server
