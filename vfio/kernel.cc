// SPDX-License-Identifier: Apache-2.0
#include "vfio/kernel.h"

#include "absl/strings/str_cat.h"

namespace physpool::vfio {

std::string Hex(uint64_t v) { return absl::StrCat("0x", absl::Hex(v)); }

absl::Status Annotate(const absl::Status& s, absl::string_view what) {
  absl::Status out(s.code(), absl::StrCat(what, ": ", s.message()));
  s.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

}  // namespace physpool::vfio
