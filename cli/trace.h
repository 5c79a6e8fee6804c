// SPDX-License-Identifier: Apache-2.0
// One line of a `physpoolctl simulate` trace (DESIGN.md, "pglist"), decoded
// and checked: a flat JSON object (cli/flat_json.h), required fields
// present, no unknown fields, right types.
#ifndef PHYSPOOL_CLI_TRACE_H_
#define PHYSPOOL_CLI_TRACE_H_

#include <string>
#include <variant>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cli/flat_json.h"
#include "pglist/physseg.h"
#include "pglist/pool.h"
#include "pglist/request.h"

namespace physpool::cli {

struct PoolLine {
  pglist::PoolOptions options;
};
struct SegmentLine {
  pglist::SegmentSpec spec;
};
struct AllocLine {
  std::string id;
  pglist::Request req;
  bool reclaim = false;
};
struct FreeLine {
  std::string id;
};
// Extensions for capacity planning: drain, undrain or remove the segment
// whose IOVA start is `iova`.
struct SegmentControlLine {
  enum class Action { kDrain, kUndrain, kRemove } action;
  pglist::Iova iova = 0;
};
using TraceOp = std::variant<PoolLine, SegmentLine, AllocLine, FreeLine,
                             SegmentControlLine>;

// Decodes trace lines, one at a time, keeping the JSON parser's buffers
// from line to line. Not thread-safe.
class TraceParser {
 public:
  // Decodes one non-blank line. INVALID_ARGUMENT with the reason (column,
  // field) otherwise; the caller adds the line number. `readable` is as in
  // FlatJsonReader::Parse: pass the capacity of the buffer the line starts
  // in to spare a copy.
  absl::StatusOr<TraceOp> Parse(absl::string_view line, size_t readable);
  absl::StatusOr<TraceOp> Parse(absl::string_view line) {
    return Parse(line, line.size());
  }

 private:
  FlatJsonReader json_;
};

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_TRACE_H_
