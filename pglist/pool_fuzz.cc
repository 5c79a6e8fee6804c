// SPDX-License-Identifier: Apache-2.0
// libFuzzer: bytes -> operation program -> Pool vs reference model.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "pglist/testing/program.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace physpool::pglist::testing;
  const Program program = DecodeProgram({data, size});
  RunTotals totals;
  const absl::Status s = RunAgainstModel(program, &totals);
  if (!s.ok()) {
    std::fprintf(stderr, "pool and model disagree: %s\n", s.ToString().c_str());
    std::abort();
  }
  return 0;
}
