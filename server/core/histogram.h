// SPDX-License-Identifier: Apache-2.0
// A cumulative histogram with fixed bucket bounds, as Prometheus exports it,
// and the daemon's latency histograms by allocation path (PathTimes).
//
// State: none (value types). Thread safety: values, not thread-safe: a
// shared one is guarded by its owner (the daemon's are in Parts, under the
// pool's lock). I/O: none. REQUIRES: `bounds` ascending.
#ifndef PHYSPOOL_SERVER_HISTOGRAM_H_
#define PHYSPOOL_SERVER_HISTOGRAM_H_

#include <cstdint>
#include <map>
#include <string>
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

// The buckets of the daemon's latency histograms, in seconds.
inline std::vector<double> SecondsBuckets() {
  return {1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2, 5e-2, 0.25, 1, 5, 30};
}

// Latencies by allocation path (physpool_alloc_duration_seconds).
struct PathTimes {
  std::map<std::string, Histogram> by_path;
  void Observe(const std::string& path, double seconds) {
    by_path.try_emplace(path, SecondsBuckets()).first->second.Observe(seconds);
  }
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_HISTOGRAM_H_
