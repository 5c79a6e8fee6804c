// A cumulative histogram with fixed bucket bounds, as Prometheus exports it.
#ifndef PHYSPOOL_SERVER_HISTOGRAM_H_
#define PHYSPOOL_SERVER_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace physpool::server {

struct Histogram {
  std::vector<double> bounds;    // ascending upper bounds; +Inf implied
  std::vector<uint64_t> counts;  // per bucket, not cumulative; last is +Inf
  double sum = 0;
  uint64_t count = 0;

  explicit Histogram(std::vector<double> b = {})
      : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
  void Observe(double v) {
    size_t i = 0;
    while (i < bounds.size() && v > bounds[i]) ++i;
    ++counts[i];
    sum += v;
    ++count;
  }
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_HISTOGRAM_H_
