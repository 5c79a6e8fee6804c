// SPDX-License-Identifier: Apache-2.0
// libFuzzer: arbitrary bytes as a trace, line by line, through the reader
// and the simulator. Nothing may crash; the pool's invariants must hold.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_split.h"
#include "cli/simulate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  physpool::cli::Simulator sim;
  physpool::cli::TraceParser parser;
  std::string out;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    auto op = parser.Parse(line);
    if (!op.ok()) continue;
    // Keep the fuzzer's memory bounded: segments of at most 2^20 pages.
    if (auto* seg = std::get_if<physpool::cli::SegmentLine>(&*op)) {
      if (seg->spec.pages.value > (1u << 20)) continue;
    }
    (void)sim.Apply(*op, &out);
    out.clear();
  }
  if (sim.pool() != nullptr) {
    const absl::Status s = sim.pool()->Verify();
    if (!s.ok()) {
      std::fprintf(stderr, "invariant broken: %s\n", s.ToString().c_str());
      std::abort();
    }
  }
  return 0;
}
