// SPDX-License-Identifier: Apache-2.0
// The figures of churn runs (bench/churn.h), as bench/dpdk_compare's and
// bench/arena/'s tables print them: quantiles; per set of request classes,
// the quantiles of the steps' allocations and of the frees, and how many
// allocations failed; times in µs as table cells. No I/O.
#ifndef PHYSPOOL_BENCH_FIGURES_H_
#define PHYSPOOL_BENCH_FIGURES_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "bench/churn.h"

namespace physpool::bench {

// The q-quantile (0..1) of v (reorders v); 0 for an empty v.
double Quantile(std::vector<double>& v, double q);

// The quantiles the tables give (ns).
struct Quantiles {
  double p50 = 0, p99 = 0, p999 = 0;
};
Quantiles QuantilesOf(std::vector<double> v);

// Sets of request classes: bit c for RequestClass c.
constexpr unsigned ClassBit(RequestClass c) {
  return 1u << static_cast<int>(c);
}
inline constexpr unsigned kAllClasses = (1u << kNumRequestClasses) - 1;
inline constexpr unsigned kPlainAndAligned =
    ClassBit(RequestClass::kPlain) | ClassBit(RequestClass::kAligned);

// A run's steps and frees of a set of request classes (a free counts in
// its allocation's class).
struct Fig {
  Quantiles alloc, alloc_ok, free;  // alloc_ok: the allocations that succeeded
  uint64_t steps = 0, failed = 0;
  double FailPct() const { return steps ? 100.0 * failed / steps : 0; }
};
Fig Figures(const ChurnSamples& s, unsigned classes);

// `ns` in µs: two decimals below 10 µs, none from there.
std::string Us(double ns);
// Table cells "<Us> µs", joined by " | ".
std::string UsCells(std::initializer_list<double> ns);

// A table's head: the row of its columns' names and the row below it.
std::string TableHead(std::initializer_list<const char*> columns);

}  // namespace physpool::bench

#endif  // PHYSPOOL_BENCH_FIGURES_H_
