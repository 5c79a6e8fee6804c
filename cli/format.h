// SPDX-License-Identifier: Apache-2.0
// Output helpers of physpoolctl: human units, aligned tables, usage bars and
// the occupancy map.
#ifndef PHYSPOOL_CLI_FORMAT_H_
#define PHYSPOOL_CLI_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace physpool::cli {

// 1536 -> "1.5 KiB"; exact multiples print without decimals ("64 MiB").
std::string HumanBytes(uint64_t bytes);
// "64KiB", "1M", "2 GiB", "4096" -> bytes. INVALID_ARGUMENT otherwise.
absl::StatusOr<uint64_t> ParseBytes(absl::string_view s);
// "5s", "500ms", "2m", "1h", "30" (seconds) -> milliseconds.
absl::StatusOr<int64_t> ParseMillis(absl::string_view s);

// Rows of cells, printed with each column padded to its widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) {
    rows_.push_back(std::move(header));
  }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// "[####~~......]": used '#', scrubbing '~', free '.', `width` cells.
std::string UsageBar(uint64_t used, uint64_t scrubbing, uint64_t total,
                     int width);

// One segment's occupancy as runs of a state, drawn one cell per
// `pages_per_cell` pages, `width` cells per line; a cell shows the state
// holding most of its pages (ties: used, preemptible, scrubbing, free).
enum class CellState { kFree = 0, kUsed = 1, kPreemptible = 2, kScrubbing = 3 };
struct StateRun {
  CellState state;
  uint64_t offset_pages;  // from the segment start
  uint64_t pages;
};
std::vector<CellState> Cells(const std::vector<StateRun>& runs, uint64_t pages,
                             uint64_t pages_per_cell);
std::string DrawCells(const std::vector<CellState>& cells, int width,
                      bool ascii);
std::string MapLegend(bool ascii);

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_FORMAT_H_
