// One seeded churn workload, run the same way on any contiguous allocator
// (bench/dpdk_compare): pre-fill to a target occupancy, then a number of
// steps of "free random allocations while at or above the target, then
// allocate one". The steps' requests are the same for every allocator (a
// stream of their own). Every answer is checked (alignment, at least a
// page; boundary; inside the allocator's range; no overlap with a live
// allocation); each Allocate and Free call is timed alone. Single-threaded;
// no I/O.
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

// One allocator under test. Handles are the target's own.
class ChurnTarget {
 public:
  virtual ~ChurnTarget() = default;
  virtual std::string Name() const = 0;
  // The address range every answer must lie in, [lo, hi).
  virtual uint64_t Lo() const = 0;
  virtual uint64_t Hi() const = 0;
  // The address of a new allocation of r (its handle in *handle), or
  // nullopt if the allocator has no room.
  virtual std::optional<uint64_t> Allocate(const ChurnRequest& r,
                                           uint64_t* handle) = 0;
  virtual void Free(uint64_t handle) = 0;
};

struct ChurnOptions {
  uint64_t seed = 24;
  uint64_t steps = 200000;
  double target = 0.80;   // occupancy: live requested bytes / capacity
  uint64_t capacity = 0;  // bytes
};

struct ChurnResult {
  std::string name;
  std::vector<double> alloc_ns, free_ns;  // every call of the steps
  std::vector<uint32_t> free_step;        // the step of each free_ns entry
  std::vector<RequestClass> free_class;   // the freed allocation's class
  std::vector<uint8_t> step_failed;       // per step: its allocation failed
  std::vector<RequestClass> step_class;   // per step: its request's class
  std::vector<float> step_occupancy;      // per step, after its allocation
  uint64_t prefill_calls = 0;             // Allocate calls of the pre-fill
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

// The q-quantile (0..1) of v (reorders v); 0 for an empty v.
double Quantile(std::vector<double>& v, double q);

}  // namespace physpool::bench

#endif  // PHYSPOOL_BENCH_CHURN_H_
