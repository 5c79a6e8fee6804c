// SPDX-License-Identifier: Apache-2.0
#include "bench/figures.h"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace physpool::bench {

double Quantile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * v.size()));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

Quantiles QuantilesOf(std::vector<double> v) {
  Quantiles q;
  q.p50 = Quantile(v, 0.5);
  q.p99 = Quantile(v, 0.99);
  q.p999 = Quantile(v, 0.999);
  return q;
}

Fig Figures(const ChurnSamples& s, unsigned classes) {
  std::vector<double> a, ok, fr;
  Fig f;
  for (size_t i = 0; i < s.alloc_ns.size(); ++i) {
    if ((classes & ClassBit(s.step_class[i])) == 0) continue;
    a.push_back(s.alloc_ns[i]);
    if (!s.step_failed[i]) ok.push_back(s.alloc_ns[i]);
    ++f.steps;
    f.failed += s.step_failed[i];
  }
  for (size_t i = 0; i < s.free_ns.size(); ++i) {
    if ((classes & ClassBit(s.free_class[i])) != 0) fr.push_back(s.free_ns[i]);
  }
  f.alloc = QuantilesOf(std::move(a));
  f.alloc_ok = QuantilesOf(std::move(ok));
  f.free = QuantilesOf(std::move(fr));
  return f;
}

std::string Us(double ns) {
  char b[32];
  std::snprintf(b, sizeof(b), ns < 10000 ? "%.2f" : "%.0f", ns / 1000);
  return b;
}

std::string UsCells(std::initializer_list<double> ns) {
  std::string cells;
  for (double n : ns) {
    if (!cells.empty()) cells += " | ";
    cells += Us(n) + " µs";
  }
  return cells;
}

std::string TableHead(std::initializer_list<const char*> columns) {
  std::string names = "|", rule = "|";
  for (const char* c : columns) {
    names = names + " " + c + " |";
    rule += "---|";
  }
  return names + "\n" + rule + "\n";
}

}  // namespace physpool::bench
