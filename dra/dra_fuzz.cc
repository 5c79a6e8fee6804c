// SPDX-License-Identifier: Apache-2.0
// Fuzzes what physpool-dra parses from outside: quantities (the API
// server's consumedCapacity and the claims' opaque config) and the claim
// record. A quantity that parses formats back to the same number, and
// nothing crashes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "dra/claim_state.h"
#include "dra/quantity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<uint64_t> q = physpool::dra::ParseQuantity(text);
  if (q.ok()) {
    absl::StatusOr<uint64_t> back =
        physpool::dra::ParseQuantity(physpool::dra::FormatQuantity(*q));
    if (!back.ok() || *back != *q) abort();
  }
  (void)physpool::dra::ClaimState::Parse("/nonexistent/state.json", text);
  return 0;
}
