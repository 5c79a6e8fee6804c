#include "bench/churn.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"

namespace physpool::bench {
namespace {

constexpr uint64_t kPage = ChurnRequest::kPage;

double Now() {
  return std::chrono::duration<double, std::nano>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Live {
  uint64_t handle, addr, bytes;
  RequestClass klass;
};

}  // namespace

const char* RequestClassName(RequestClass c) {
  switch (c) {
    case RequestClass::kPlain:
      return "plain";
    case RequestClass::kAligned:
      return "aligned";
    case RequestClass::kBoundary:
      return "boundary";
  }
  return "?";
}

ChurnRequest ChurnStream::Next() {
  ChurnRequest r;
  // 1 .. 2048 pages, log-uniform.
  const double l = std::uniform_real_distribution<double>(0, 11)(rng_);
  r.bytes = std::max<uint64_t>(1, std::llround(std::exp2(l))) * kPage;
  const uint64_t kind = rng_() % 30;
  if (kind < 10) {
    r.alignment = (2 * kPage) << (rng_() % 9);  // 8 KiB .. 2 MiB
  } else if (kind < 13) {
    r.boundary = NextPow2(r.bytes) << (1 + rng_() % 3);
  }
  return r;
}

ChurnResult FirstSteps(const ChurnResult& r, uint64_t steps) {
  ChurnResult t;
  t.name = r.name;
  steps = std::min<uint64_t>(steps, r.steps);
  t.steps = steps;
  t.prefill_calls = r.prefill_calls;
  t.prefill_allocs = r.prefill_allocs;
  t.alloc_ns.assign(r.alloc_ns.begin(), r.alloc_ns.begin() + steps);
  t.step_failed.assign(r.step_failed.begin(), r.step_failed.begin() + steps);
  t.step_class.assign(r.step_class.begin(), r.step_class.begin() + steps);
  t.step_occupancy.assign(r.step_occupancy.begin(),
                          r.step_occupancy.begin() + steps);
  for (size_t i = 0; i < r.free_ns.size() && r.free_step[i] < steps; ++i) {
    t.free_ns.push_back(r.free_ns[i]);
    t.free_step.push_back(r.free_step[i]);
    t.free_class.push_back(r.free_class[i]);
  }
  double sum = 0;
  for (uint64_t i = 0; i < steps; ++i) {
    t.failures += r.step_failed[i];
    sum += r.step_occupancy[i];
  }
  t.occupancy_mean = steps ? sum / steps : 0;
  t.occupancy_end = steps ? r.step_occupancy[steps - 1] : 0;
  t.violations = r.violations;
  return t;
}

double Quantile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * v.size()));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

ChurnResult RunChurn(ChurnTarget& t, const ChurnOptions& o) {
  ChurnResult res;
  res.name = t.Name();
  // The pre-fill's requests and the steps' come from two streams, so that
  // every allocator is asked the same steps however long its pre-fill.
  ChurnStream prefill(o.seed), stream(o.seed ^ 0x9e3779b97f4a7c15);
  std::mt19937_64 pick(o.seed ^ 0x5bd1e995);
  std::vector<Live> live;
  std::map<uint64_t, uint64_t> by_addr;  // addr -> end, for the overlap check
  uint64_t live_bytes = 0;
  const double target = o.target * static_cast<double>(o.capacity);

  auto check = [&](const ChurnRequest& r, uint64_t a) -> std::string {
    const uint64_t e = a + r.bytes;
    if (a % r.EffectiveAlignment() != 0) {
      return absl::StrCat("address ", a, " not aligned to ",
                          r.EffectiveAlignment());
    }
    if (r.boundary != 0 && (a ^ (e - 1)) & ~(r.boundary - 1)) {
      return absl::StrCat("[", a, ", ", e, ") crosses a multiple of ",
                          r.boundary);
    }
    if (a < t.Lo() || e > t.Hi() || e < a) {
      return absl::StrCat("[", a, ", ", e, ") outside the range");
    }
    auto next = by_addr.lower_bound(a);
    if ((next != by_addr.end() && next->first < e) ||
        (next != by_addr.begin() && std::prev(next)->second > a)) {
      return absl::StrCat("[", a, ", ", e, ") overlaps a live allocation");
    }
    return "";
  };
  // Allocates r; records it if it succeeded. Returns the call's time.
  auto allocate = [&](const ChurnRequest& r, bool* ok) {
    uint64_t handle = 0;
    const double t0 = Now();
    const std::optional<uint64_t> a = t.Allocate(r, &handle);
    const double dt = Now() - t0;
    *ok = a.has_value();
    if (*ok) {
      const std::string bad = check(r, *a);
      if (!bad.empty() && res.violations++ == 0) res.first_violation = bad;
      live.push_back({handle, *a, r.bytes, r.Class()});
      by_addr[*a] = *a + r.bytes;
      live_bytes += r.bytes;
    }
    return dt;
  };
  // Frees a random live allocation; returns the call's time and its class.
  auto free_one = [&]() {
    const size_t k = pick() % live.size();
    const Live v = live[k];
    live[k] = live.back();
    live.pop_back();
    by_addr.erase(v.addr);
    live_bytes -= v.bytes;
    const double t0 = Now();
    t.Free(v.handle);
    return std::make_pair(Now() - t0, v.klass);
  };

  // Pre-fill; give up after 1000 failures in a row.
  for (int misses = 0; live_bytes < target && misses < 1000;) {
    bool ok = false;
    allocate(prefill.Next(), &ok);
    ++res.prefill_calls;
    misses = ok ? 0 : misses + 1;
    res.prefill_allocs += ok;
  }
  double occupancy_sum = 0;
  for (uint64_t i = 0; i < o.steps; ++i) {
    while (live_bytes >= target && !live.empty()) {
      const auto [ns, klass] = free_one();
      res.free_ns.push_back(ns);
      res.free_step.push_back(static_cast<uint32_t>(i));
      res.free_class.push_back(klass);
    }
    bool ok = false;
    const ChurnRequest r = stream.Next();
    res.alloc_ns.push_back(allocate(r, &ok));
    res.failures += !ok;
    res.step_failed.push_back(!ok);
    res.step_class.push_back(r.Class());
    const double occupancy = static_cast<double>(live_bytes) / o.capacity;
    res.step_occupancy.push_back(static_cast<float>(occupancy));
    occupancy_sum += occupancy;
  }
  res.steps = o.steps;
  res.occupancy_end = static_cast<double>(live_bytes) / o.capacity;
  res.occupancy_mean = o.steps ? occupancy_sum / o.steps : 0;
  res.live_end = live.size();
  while (!live.empty()) free_one();
  return res;
}

}  // namespace physpool::bench
