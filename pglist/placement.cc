// SPDX-License-Identifier: Apache-2.0
#include "pglist/placement.h"

namespace physpool::pglist {

absl::string_view PlacementName(Placement p) {
  return p == Placement::kBestFit ? "bestfit" : "nextfit";
}

std::optional<Placement> ParsePlacement(absl::string_view name) {
  if (name == "nextfit") return Placement::kNextFit;
  if (name == "bestfit") return Placement::kBestFit;
  return std::nullopt;
}

}  // namespace physpool::pglist
