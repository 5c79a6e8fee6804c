// SPDX-License-Identifier: Apache-2.0
#include "bench/arena/runner.h"

#include <algorithm>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "bench/arena/page_map.h"

namespace physpool::bench {
namespace {

// What one thread measured over its steps, and found.
struct ThreadResult : ChurnSamples {
  uint64_t failures = 0, violations = 0;
  std::string first_violation;
  double occupancy_sum = 0;  // of its capacity, after each step
  double end_ns = 0;         // when its last step returned
  uint64_t live_end = 0;     // requested bytes live after its last step
};

// How a run's threads and the main thread take turns.
struct Phases {
  explicit Phases(int n) : prefilled(n), stepped(n) {}
  absl::BlockingCounter prefilled;  // each thread, once pre-filled
  absl::Notification go;            // the main thread: start the steps
  absl::BlockingCounter stepped;    // each thread, after its last step
  absl::Notification drain;         // the main thread: free everything
};

// One thread of the workload on its own target: RunChurn's algorithm and
// streams (bench/churn.cc), plus the untimed checks and touches, in the
// phases above.
class ChurnThread {
 public:
  ChurnThread(MappedTarget& t, const Plan& p, PageMap* pages)
      : t_(t), p_(p), pages_(pages), pick_(FreePicker(p.seed)) {}
  ThreadResult Run(Phases* ph);

 private:
  struct Live : LiveAllocation {
    uint8_t tag;
    bool checked;  // its pages are claimed and its bytes tagged
  };
  // Allocates r (timed into *ns unless null); checks, tags and records it.
  bool Allocate(const ChurnRequest& r, std::vector<double>* ns);
  // Frees a random live allocation (timed, recorded if `record`).
  void FreeOne(bool record);
  std::string Check(const ChurnRequest& r, uint64_t a, uint64_t handle);
  void Violation(const std::string& what) {
    if (res_.violations++ == 0) res_.first_violation = what;
  }

  MappedTarget& t_;
  const Plan p_;
  PageMap* const pages_;
  std::mt19937_64 pick_;
  std::vector<Live> live_;
  uint64_t live_bytes_ = 0;
  uint8_t next_tag_ = 0;
  ThreadResult res_;
};

std::string ChurnThread::Check(const ChurnRequest& r, uint64_t a,
                               uint64_t handle) {
  constexpr AddressStyle kStyle = AddressStyle::kHex;
  if (std::string bad = CheckAnswer(t_, r, a, kStyle); !bad.empty()) return bad;
  if (std::string bad = t_.Check(handle, r); !bad.empty()) return bad;
  if (!pages_->Claim(a, r.bytes)) return OverlapMessage(r, a, kStyle);
  return "";
}

bool ChurnThread::Allocate(const ChurnRequest& r, std::vector<double>* ns) {
  const TimedAnswer t = TimedAllocate(t_, r);
  if (ns != nullptr) ns->push_back(t.ns);
  if (!t.addr.has_value()) return false;
  const std::string bad = Check(r, *t.addr, t.handle);
  if (!bad.empty()) Violation(bad);
  Live v{{t.handle, *t.addr, r.bytes, r.Class()}, 0, bad.empty()};
  if (v.checked) {
    v.tag = next_tag_ = static_cast<uint8_t>(next_tag_ % 255 + 1);
    uint8_t* cpu = t_.Cpu(t.handle);
    cpu[0] = v.tag;
    cpu[r.bytes - 1] = v.tag;
  }
  live_.push_back(v);
  live_bytes_ += r.bytes;
  return true;
}

void ChurnThread::FreeOne(bool record) {
  const Live v = TakeRandom(live_, pick_);
  live_bytes_ -= v.bytes;
  if (v.checked) {
    const uint8_t* cpu = t_.Cpu(v.handle);
    if (cpu[0] != v.tag || cpu[v.bytes - 1] != v.tag) {
      Violation(absl::StrCat("the tag of [0x", absl::Hex(v.addr), ", +",
                             v.bytes, ") was overwritten while it was live"));
    }
    if (!pages_->Unclaim(v.addr, v.bytes)) {
      Violation(absl::StrCat("a page of [0x", absl::Hex(v.addr), ", +", v.bytes,
                             ") was freed by another allocation"));
    }
  }
  const double ns = TimedFree(t_, v.handle);
  if (record) {
    res_.free_ns.push_back(ns);
    res_.free_class.push_back(v.klass);
  }
}

ThreadResult ChurnThread::Run(Phases* ph) {
  ChurnStream prefill = PrefillStream(p_.seed), stream = StepStream(p_.seed);
  const double target = kTarget * static_cast<double>(p_.capacity);
  for (int misses = 0; live_bytes_ < target && misses < 1000;) {
    misses = Allocate(prefill.Next(), nullptr) ? 0 : misses + 1;
  }
  ph->prefilled.DecrementCount();
  ph->go.WaitForNotification();
  for (uint64_t i = 0; i < p_.steps; ++i) {
    while (live_bytes_ >= target && !live_.empty()) FreeOne(true);
    const ChurnRequest r = stream.Next();
    const bool ok = Allocate(r, &res_.alloc_ns);
    res_.failures += !ok;
    res_.step_failed.push_back(!ok);
    res_.step_class.push_back(r.Class());
    res_.occupancy_sum += static_cast<double>(live_bytes_) / p_.capacity;
  }
  res_.end_ns = NowNs();
  res_.live_end = live_bytes_;
  ph->stepped.DecrementCount();
  ph->drain.WaitForNotification();
  while (!live_.empty()) FreeOne(false);
  return std::move(res_);
}

void Merge(const ThreadResult& t, RunSummary* s) {
  s->Append(t);
  s->steps += t.alloc_ns.size();
  s->failures += t.failures;
  s->occupancy_mean += t.occupancy_sum;
  s->live_end += t.live_end;
  if (t.violations != 0 && s->violations == 0) {
    s->first_violation = t.first_violation;
  }
  s->violations += t.violations;
  for (double ns : t.alloc_ns) s->busy_s += ns / 1e9;
  for (double ns : t.free_ns) s->busy_s += ns / 1e9;
}

}  // namespace

RunSummary RunThreads(
    const std::string& name, int threads, const Plan& base,
    const std::function<std::unique_ptr<MappedTarget>(int)>& make,
    const std::function<double()>& used) {
  std::vector<std::unique_ptr<MappedTarget>> targets;
  for (int t = 0; t < threads; ++t) targets.push_back(make(t));
  PageMap pages(targets[0]->Lo(), targets[0]->Hi());
  Phases ph(threads);
  std::vector<ThreadResult> results(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    Plan p = base;
    p.seed = base.seed + t;
    p.capacity = base.capacity / threads;
    p.steps = base.steps / threads + (t < int(base.steps % threads) ? 1 : 0);
    pool.emplace_back([&, t, p] {
      results[t] = ChurnThread(*targets[t], p, &pages).Run(&ph);
    });
  }
  ph.prefilled.Wait();
  const double t0 = NowNs();
  ph.go.Notify();
  ph.stepped.Wait();
  RunSummary s;
  if (used) s.used_end = used();
  ph.drain.Notify();
  for (std::thread& t : pool) t.join();
  s.name = name;
  s.threads = threads;
  double end = t0;
  for (const ThreadResult& r : results) {
    Merge(r, &s);
    end = std::max(end, r.end_ns);
  }
  for (const auto& t : targets) {
    if (s.error.empty()) s.error = t->Error();
  }
  s.wall_s = (end - t0) / 1e9;
  s.occupancy_mean /= std::max<uint64_t>(1, s.steps);
  return s;
}

}  // namespace physpool::bench
