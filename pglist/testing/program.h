// SPDX-License-Identifier: Apache-2.0
// Random operation programs over a pool, decoded from bytes so that the
// seeded property test and the libFuzzer target exercise the same space.
// Any byte string decodes to a valid program (ops may still be requests the
// pool must reject).
#ifndef PHYSPOOL_PGLIST_TESTING_PROGRAM_H_
#define PHYSPOOL_PGLIST_TESTING_PROGRAM_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "pglist/physseg.h"
#include "pglist/pool.h"
#include "pglist/request.h"

namespace physpool::pglist::testing {

struct AddSegmentOp {
  SegmentSpec spec;
};
struct AllocOp {
  Request req;
  bool reclaim = false;
};
struct FreeOp {
  uint32_t pick = 0;
};  // live allocation pick % count
struct DrainOp {
  uint32_t pick = 0;
  bool drain = true;
};
struct RemoveSegmentOp {
  uint32_t pick = 0;
};
using Op =
    std::variant<AddSegmentOp, AllocOp, FreeOp, DrainOp, RemoveSegmentOp>;

struct Program {
  PoolOptions options;
  std::vector<Op> ops;  // starts with one or more AddSegmentOps
};

Program DecodeProgram(absl::Span<const uint8_t> bytes);

// Replays `program` on Pool and ReferencePool side by side. After every op
// it compares the outcomes (status code, fail reason, id, path, runs) and
// checks the invariants (Pool::Verify; free + used = total in both; every
// run admitted by its request; the two agree on free pages; each answer
// respects segment order and completeness, order_check.h). Returns the
// first difference as INTERNAL with the op index. Adds the ops run and the
// pool's path counters to *totals.
struct RunTotals {
  uint64_t ops = 0;
  PoolStats stats;  // summed over programs
  // Single-run answers by placement (Placement as index), and those whose
  // first feasible segment was not the first segment in allocation order.
  uint64_t contig[2] = {0, 0};
  uint64_t contig_past_first_segment = 0;
  // Multi answers with runs in more than one freelist, and those in
  // freelists below the first that held one run.
  uint64_t multi_mixed = 0;
  uint64_t multi_below_one_run = 0;
};
absl::Status RunAgainstModel(const Program& program, RunTotals* totals);

std::string DescribeOp(const Op& op);

}  // namespace physpool::pglist::testing

#endif  // PHYSPOOL_PGLIST_TESTING_PROGRAM_H_
