// SPDX-License-Identifier: Apache-2.0
#include "bench/churn.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"

namespace physpool::bench {
namespace {

constexpr uint64_t kPage = ChurnRequest::kPage;

std::string Address(uint64_t a, AddressStyle style) {
  return style == AddressStyle::kHex ? absl::StrCat("0x", absl::Hex(a))
                                     : absl::StrCat(a);
}

// "[a, e)" in `style`.
std::string Span(uint64_t a, uint64_t e, AddressStyle style) {
  return absl::StrCat("[", Address(a, style), ", ", Address(e, style), ")");
}

// One run of RunChurn on its target: the live allocations, the checks of
// every answer (the overlap check against a map of the live ones), the
// untimed bookkeeping.
class Churn {
 public:
  Churn(ChurnTarget& t, const ChurnOptions& o, ChurnResult* res)
      : t_(t), res_(res), pick_(FreePicker(o.seed)) {}
  // Allocates r; checks and records it if it succeeded (*ok). Returns the
  // call's time.
  double Allocate(const ChurnRequest& r, bool* ok);
  // Frees a random live allocation; returns the call's time and its class.
  std::pair<double, RequestClass> FreeOne();
  void FreeAll() {
    while (!live_.empty()) FreeOne();
  }
  uint64_t live_bytes() const { return live_bytes_; }
  size_t live() const { return live_.size(); }

 private:
  std::string Check(const ChurnRequest& r, uint64_t a) const;

  ChurnTarget& t_;
  ChurnResult* const res_;
  std::mt19937_64 pick_;
  std::vector<LiveAllocation> live_;
  std::map<uint64_t, uint64_t> by_addr_;  // addr -> end, for the overlaps
  uint64_t live_bytes_ = 0;
};

std::string Churn::Check(const ChurnRequest& r, uint64_t a) const {
  constexpr AddressStyle kStyle = AddressStyle::kDecimal;
  if (std::string bad = CheckAnswer(t_, r, a, kStyle); !bad.empty()) {
    return bad;
  }
  const uint64_t e = a + r.bytes;
  auto next = by_addr_.lower_bound(a);
  if ((next != by_addr_.end() && next->first < e) ||
      (next != by_addr_.begin() && std::prev(next)->second > a)) {
    return OverlapMessage(r, a, kStyle);
  }
  return "";
}

double Churn::Allocate(const ChurnRequest& r, bool* ok) {
  const TimedAnswer t = TimedAllocate(t_, r);
  *ok = t.addr.has_value();
  if (*ok) {
    const uint64_t a = *t.addr;
    const std::string bad = Check(r, a);
    if (!bad.empty() && res_->violations++ == 0) res_->first_violation = bad;
    live_.push_back({t.handle, a, r.bytes, r.Class()});
    by_addr_[a] = a + r.bytes;
    live_bytes_ += r.bytes;
  }
  return t.ns;
}

std::pair<double, RequestClass> Churn::FreeOne() {
  const LiveAllocation v = TakeRandom(live_, pick_);
  by_addr_.erase(v.addr);
  live_bytes_ -= v.bytes;
  return std::make_pair(TimedFree(t_, v.handle), v.klass);
}

// RunChurn's steps on `c`, from `stream`, holding `target` bytes.
void Steps(Churn& c, ChurnStream& stream, const ChurnOptions& o, double target,
           ChurnResult* res) {
  double occupancy_sum = 0;
  for (uint64_t i = 0; i < o.steps; ++i) {
    while (c.live_bytes() >= target && c.live() != 0) {
      const auto [ns, klass] = c.FreeOne();
      res->free_ns.push_back(ns);
      res->free_step.push_back(static_cast<uint32_t>(i));
      res->free_class.push_back(klass);
    }
    bool ok = false;
    const ChurnRequest r = stream.Next();
    res->alloc_ns.push_back(c.Allocate(r, &ok));
    res->failures += !ok;
    res->step_failed.push_back(!ok);
    res->step_class.push_back(r.Class());
    const double occupancy = static_cast<double>(c.live_bytes()) / o.capacity;
    res->step_occupancy.push_back(static_cast<float>(occupancy));
    occupancy_sum += occupancy;
  }
  res->steps = o.steps;
  res->occupancy_end = static_cast<double>(c.live_bytes()) / o.capacity;
  res->occupancy_mean = o.steps ? occupancy_sum / o.steps : 0;
  res->live_end = c.live();
}

}  // namespace

double NowNs() {
  return std::chrono::duration<double, std::nano>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

TimedAnswer TimedAllocate(ChurnTarget& t, const ChurnRequest& r) {
  TimedAnswer a;
  const double t0 = NowNs();
  a.addr = t.Allocate(r, &a.handle);
  a.ns = NowNs() - t0;
  return a;
}

double TimedFree(ChurnTarget& t, uint64_t handle) {
  const double t0 = NowNs();
  t.Free(handle);
  return NowNs() - t0;
}

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

std::string CheckAnswer(const ChurnTarget& t, const ChurnRequest& r, uint64_t a,
                        AddressStyle style) {
  const uint64_t e = a + r.bytes;
  if (a % r.EffectiveAlignment() != 0) {
    return absl::StrCat("address ", Address(a, style), " not aligned to ",
                        r.EffectiveAlignment());
  }
  if (r.boundary != 0 && ((a ^ (e - 1)) & ~(r.boundary - 1)) != 0) {
    return absl::StrCat(Span(a, e, style), " crosses a multiple of ",
                        r.boundary);
  }
  if (a < t.Lo() || e > t.Hi() || e < a) {
    return absl::StrCat(Span(a, e, style), " outside the range");
  }
  return "";
}

std::string OverlapMessage(const ChurnRequest& r, uint64_t a,
                           AddressStyle style) {
  return absl::StrCat(Span(a, a + r.bytes, style),
                      " overlaps a live allocation");
}

void ChurnSamples::Append(const ChurnSamples& o) {
  auto append = [](auto& to, const auto& from) {
    to.insert(to.end(), from.begin(), from.end());
  };
  append(alloc_ns, o.alloc_ns);
  append(free_ns, o.free_ns);
  append(step_class, o.step_class);
  append(step_failed, o.step_failed);
  append(free_class, o.free_class);
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

ChurnResult RunChurn(ChurnTarget& t, const ChurnOptions& o) {
  ChurnResult res;
  res.name = t.Name();
  ChurnStream prefill = PrefillStream(o.seed), stream = StepStream(o.seed);
  const double target = o.target * static_cast<double>(o.capacity);
  Churn c(t, o, &res);
  // Pre-fill; give up after 1000 failures in a row.
  for (int misses = 0; c.live_bytes() < target && misses < 1000;) {
    bool ok = false;
    c.Allocate(prefill.Next(), &ok);
    ++res.prefill_calls;
    misses = ok ? 0 : misses + 1;
    res.prefill_allocs += ok;
  }
  Steps(c, stream, o, target, &res);
  c.FreeAll();
  return res;
}

}  // namespace physpool::bench
