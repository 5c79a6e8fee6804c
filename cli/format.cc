// SPDX-License-Identifier: Apache-2.0
#include "cli/format.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace physpool::cli {

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B",   "KiB", "MiB",
                                           "GiB", "TiB", "PiB"};
  int u = 0;
  double v = static_cast<double>(bytes);
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return absl::StrCat(bytes, " B");
  if (bytes % (uint64_t{1} << (10 * u)) == 0)
    return absl::StrFormat("%.0f %s", v, kUnits[u]);
  return absl::StrFormat("%.1f %s", v, kUnits[u]);
}

absl::StatusOr<uint64_t> ParseBytes(absl::string_view s) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(s));
  size_t i = 0;
  while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
  uint64_t n;
  if (i == 0 || !absl::SimpleAtoi(t.substr(0, i), &n)) {
    return absl::InvalidArgumentError(absl::StrCat("bad size \"", s, "\""));
  }
  std::string unit(absl::StripAsciiWhitespace(t.substr(i)));
  int shift = 0;
  if (unit.empty() || unit == "b") {
    shift = 0;
  } else if (unit == "k" || unit == "kib" || unit == "kb") {
    shift = 10;
  } else if (unit == "m" || unit == "mib" || unit == "mb") {
    shift = 20;
  } else if (unit == "g" || unit == "gib" || unit == "gb") {
    shift = 30;
  } else if (unit == "t" || unit == "tib" || unit == "tb") {
    shift = 40;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("bad size unit in \"", s, "\" (B, KiB, MiB, GiB, TiB)"));
  }
  if (shift != 0 && n > (~uint64_t{0} >> shift)) {
    return absl::InvalidArgumentError(
        absl::StrCat("size \"", s, "\" overflows"));
  }
  return n << shift;
}

absl::StatusOr<int64_t> ParseMillis(absl::string_view s) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(s));
  size_t i = 0;
  while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
  int64_t n;
  if (i == 0 || !absl::SimpleAtoi(t.substr(0, i), &n)) {
    return absl::InvalidArgumentError(absl::StrCat("bad duration \"", s, "\""));
  }
  const std::string unit = t.substr(i);
  if (unit == "ms") return n;
  if (unit.empty() || unit == "s") return n * 1000;
  if (unit == "m") return n * 60000;
  if (unit == "h") return n * 3600000;
  return absl::InvalidArgumentError(
      absl::StrCat("bad duration unit in \"", s, "\" (ms, s, m, h)"));
}

std::string Table::Render() const {
  std::vector<size_t> w;
  for (const auto& row : rows_) {
    if (w.size() < row.size()) w.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c)
      w[c] = std::max(w[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size())
        line += std::string(w[c] - row[c].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string UsageBar(uint64_t used, uint64_t scrubbing, uint64_t total,
                     int width) {
  if (total == 0) return "[" + std::string(width, ' ') + "]";
  auto cells = [&](uint64_t v) {
    return static_cast<int>((static_cast<long double>(v) * width + total - 1) /
                            total);
  };
  const int u = std::min(width, cells(used));
  const int s = std::min(width - u, cells(scrubbing));
  return "[" + std::string(u, '#') + std::string(s, '~') +
         std::string(width - u - s, '.') + "]";
}

std::vector<CellState> Cells(const std::vector<StateRun>& runs, uint64_t pages,
                             uint64_t pages_per_cell) {
  const uint64_t n = (pages + pages_per_cell - 1) / pages_per_cell;
  std::vector<std::array<uint64_t, 4>> count(n, {0, 0, 0, 0});
  for (const StateRun& r : runs) {
    uint64_t pos = r.offset_pages;
    const uint64_t end = std::min(pages, r.offset_pages + r.pages);
    while (pos < end) {
      const uint64_t cell = pos / pages_per_cell;
      const uint64_t cell_end = std::min(end, (cell + 1) * pages_per_cell);
      count[cell][static_cast<int>(r.state)] += cell_end - pos;
      pos = cell_end;
    }
  }
  std::vector<CellState> out;
  for (const auto& c : count) {
    CellState best =
        CellState::kUsed;  // ties: used, preemptible, scrubbing, free
    for (CellState s :
         {CellState::kPreemptible, CellState::kScrubbing, CellState::kFree}) {
      if (c[static_cast<int>(s)] > c[static_cast<int>(best)]) best = s;
    }
    out.push_back(best);
  }
  return out;
}

std::string DrawCells(const std::vector<CellState>& cells, int width,
                      bool ascii) {
  static constexpr const char* kAscii[] = {".", "#", "P", "~"};
  static constexpr const char* kUnicode[] = {"\u00b7", "\u2588", "\u2593",
                                             "\u2592"};
  std::string out;
  for (size_t i = 0; i < cells.size(); ++i) {
    out += (ascii ? kAscii : kUnicode)[static_cast<int>(cells[i])];
    if ((i + 1) % width == 0 || i + 1 == cells.size()) out += "\n";
  }
  return out;
}

std::string MapLegend(bool ascii) {
  return ascii ? "legend: # used  P preemptible  ~ scrubbing  . free\n"
               : "legend: \u2588 used  \u2593 preemptible  \u2592 scrubbing  "
                 "\u00b7 free\n";
}

}  // namespace physpool::cli
