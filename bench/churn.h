// SPDX-License-Identifier: Apache-2.0
// One seeded churn workload, run the same way on any contiguous allocator
// (bench/dpdk_compare): pre-fill to a target occupancy, then a number of
// steps of "free random allocations while at or above the target, then
// allocate one". The steps' requests are the same for every allocator (a
// stream of their own). Every answer is checked (CheckAnswer: alignment, at
// least a page; boundary; inside the allocator's range; and no overlap with
// a live allocation); each Allocate and Free call is timed alone.
// Single-threaded; no I/O. Also what another runner of the algorithm needs
// to run it alike (bench/arena/ runs it on several threads): the streams,
// the targets' interfaces, the timed calls, the checks. The figures of a
// run: bench/figures.h.
#ifndef PHYSPOOL_BENCH_CHURN_H_
#define PHYSPOOL_BENCH_CHURN_H_

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "pglist/units.h"

namespace physpool::bench {

using pglist::NextPow2;

// The kinds of request of the stream, for figures per kind.
enum class RequestClass : uint8_t { kPlain, kAligned, kBoundary };
inline constexpr int kNumRequestClasses = 3;
const char* RequestClassName(RequestClass c);

// A request in bytes, in whole pages. `alignment` 0 means a page (4 KiB):
// every answer must be page aligned, as a DMA page allocator's are;
// `boundary` 0 means none (else a power of two >= bytes: the answer must
// not cross a multiple of it).
struct ChurnRequest {
  static constexpr uint64_t kPage = 4096;
  uint64_t bytes = 0;
  uint64_t alignment = 0;
  uint64_t boundary = 0;

  uint64_t EffectiveAlignment() const {
    return alignment > kPage ? alignment : kPage;
  }
  RequestClass Class() const {
    return boundary != 0    ? RequestClass::kBoundary
           : alignment != 0 ? RequestClass::kAligned
                            : RequestClass::kPlain;
  }
};

// The request stream: sizes log-uniform from 4 KiB to 8 MiB in whole 4 KiB
// pages; a third aligned (8 KiB .. 2 MiB), a tenth with a boundary of 2, 4
// or 8 times the size's power of two, the rest plain. Same seed, same
// stream.
class ChurnStream {
 public:
  explicit ChurnStream(uint64_t seed) : rng_(seed) {}
  ChurnRequest Next();

 private:
  std::mt19937_64 rng_;
};

// The streams of a run of seed `seed`: the pre-fill's requests, the
// steps' requests (a stream of their own, so that every allocator is asked
// the same steps however long its pre-fill), and the choice of what to free.
inline ChurnStream PrefillStream(uint64_t seed) { return ChurnStream(seed); }
inline ChurnStream StepStream(uint64_t seed) {
  return ChurnStream(seed ^ 0x9e3779b97f4a7c15);
}
inline std::mt19937_64 FreePicker(uint64_t seed) {
  return std::mt19937_64(seed ^ 0x5bd1e995);
}

// r as an allocator's request of one contiguous run: Options has the
// fields bytes, alignment, boundary and max_segments (pglist::Request,
// physpool::BufferOptions).
template <typename Options>
Options OneRunRequest(const ChurnRequest& r) {
  Options o;
  o.bytes = r.bytes;
  o.alignment = r.alignment;
  o.boundary = r.boundary;
  o.max_segments = 1;
  return o;
}

// One allocator under test, answering in the address range [lo, hi) it
// was made with. Handles are the target's own.
class ChurnTarget {
 public:
  virtual ~ChurnTarget() = default;
  virtual std::string Name() const = 0;
  // The address range every answer must lie in, [lo, hi).
  uint64_t Lo() const { return lo_; }
  uint64_t Hi() const { return hi_; }
  // The address of a new allocation of r (its handle in *handle), or
  // nullopt if the allocator has no room.
  virtual std::optional<uint64_t> Allocate(const ChurnRequest& r,
                                           uint64_t* handle) = 0;
  virtual void Free(uint64_t handle) = 0;

 protected:
  ChurnTarget(uint64_t lo, uint64_t hi) : lo_(lo), hi_(hi) {}

 private:
  const uint64_t lo_, hi_;
};

// A call of t.Allocate(r), timed alone (NowNs).
struct TimedAnswer {
  std::optional<uint64_t> addr;  // nullopt: no room
  uint64_t handle = 0;
  double ns = 0;
};
TimedAnswer TimedAllocate(ChurnTarget& t, const ChurnRequest& r);
// t.Free(handle), timed alone: the call's ns.
double TimedFree(ChurnTarget& t, uint64_t handle);

// A live allocation of a run.
struct LiveAllocation {
  uint64_t handle, addr, bytes;
  RequestClass klass;
};

// Removes a random element of `live` (not empty) and returns it.
template <typename T>
T TakeRandom(std::vector<T>& live, std::mt19937_64& pick) {
  const size_t k = pick() % live.size();
  const T v = live[k];
  live[k] = live.back();
  live.pop_back();
  return v;
}

// A ChurnTarget whose allocations are mapped in this process: a runner may
// write their bytes (bench/arena/ writes the first and last) and asks the
// target to check what only it knows. Used by one thread.
class MappedTarget : public ChurnTarget {
 public:
  using ChurnTarget::ChurnTarget;
  // The CPU address of live allocation `handle`.
  virtual uint8_t* Cpu(uint64_t handle) const = 0;
  // "" if live allocation `handle` (of `r`, inside [Lo, Hi)) is well
  // formed; else what is wrong.
  virtual std::string Check(uint64_t handle, const ChurnRequest& r) const {
    (void)handle, (void)r;
    return "";
  }
  // The first call that failed for another reason than room; "" if none.
  virtual std::string Error() const { return ""; }
};

// How what is wrong with an answer writes its addresses.
enum class AddressStyle : uint8_t { kDecimal, kHex };

// "" if t's answer at `a` to `r` is aligned (at least to a page), keeps
// r's boundary and lies inside t's range; else what is wrong with it.
std::string CheckAnswer(const ChurnTarget& t, const ChurnRequest& r, uint64_t a,
                        AddressStyle style);
// What is wrong with the answer at `a` to `r` if it overlaps a live
// allocation (the caller knows whether it does).
std::string OverlapMessage(const ChurnRequest& r, uint64_t a,
                           AddressStyle style);

struct ChurnOptions {
  uint64_t seed = 24;
  uint64_t steps = 200000;
  double target = 0.80;   // occupancy: live requested bytes / capacity
  uint64_t capacity = 0;  // bytes
};

// The timed calls of a run's steps, for figures per request class.
struct ChurnSamples {
  std::vector<double> alloc_ns, free_ns;  // every call of the steps
  std::vector<RequestClass> step_class;   // per step: its request's class
  std::vector<uint8_t> step_failed;       // per step: its allocation failed
  std::vector<RequestClass> free_class;   // the freed allocation's class
  // Appends o's calls to these.
  void Append(const ChurnSamples& o);
};

struct ChurnResult : ChurnSamples {
  std::string name;
  std::vector<uint32_t> free_step;    // the step of each free_ns entry
  std::vector<float> step_occupancy;  // per step, after its allocation
  uint64_t prefill_calls = 0;         // Allocate calls of the pre-fill
  uint64_t prefill_allocs = 0;
  uint64_t steps = 0;
  uint64_t failures = 0;    // allocations of the steps that failed
  uint64_t violations = 0;  // answers that broke a constraint
  std::string first_violation;
  double occupancy_end = 0;   // live requested bytes / capacity
  double occupancy_mean = 0;  // after each step's allocation
  uint64_t live_end = 0;      // allocations live at the end
};

// Runs the workload on `t` and frees everything it still holds at the end.
ChurnResult RunChurn(ChurnTarget& t, const ChurnOptions& o);

// `r` restricted to its first `steps` steps (and the frees made in them);
// the end occupancy is the one after the last of them.
ChurnResult FirstSteps(const ChurnResult& r, uint64_t steps);

// steady_clock's now, in ns: what the runs time their calls with.
double NowNs();

}  // namespace physpool::bench

#endif  // PHYSPOOL_BENCH_CHURN_H_
