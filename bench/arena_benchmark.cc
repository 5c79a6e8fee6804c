// Issue 26's arena benchmark (make bench-arena): physpool::Arena's Allocate
// and Free with 1, 2 and 8 threads on the churn workload of
// bench/dpdk_compare, beside physpoold's Allocate+Release RPC pair and
// (built with -DPHYSPOOL_WITH_DPDK) DPDK's rte_malloc_socket/rte_free, in
// one process and one run.
//
// Setup: the real physpoold through the tests' harness (sim source, one
// 1.5 GiB segment, store on, unix socket); a Client over that socket
// (tenant alice); an Arena of one 1 GiB lease in one run (region
// max_segments 1; no growth; best fit). The lease's run and the CPU address
// of its first byte are learnt from the daemon (LeaseRuns) and from one
// buffer of the whole arena, which also writes every page once and msyncs
// them (no run pays for first-touch faults).
//
// Workload (bench/churn.h; RunChurn's algorithm and streams): per thread, a
// pre-fill to its share of the target, then steps of "free random buffers
// of its own while at or above its share, then allocate one". With T
// threads, thread t has seed + t, capacity 1 GiB / T (so the arena as a
// whole is held at 80 %) and --steps / T of the steps (the steps are split:
// every thread count does the same total work). Thread 0 of every run and
// rte_malloc are asked the same requests. Every request is BufferOptions
// {bytes, alignment, boundary, max_segments 1}.
//
// Timed: each Allocate and Free call alone (steady_clock): the arena's call
// plus putting the Buffer in (or freeing it from) a slot vector. Untimed,
// after each allocation: the answer is checked (one run of the size in
// whole pages; IOVA aligned, within its boundary, inside the lease's run;
// its CPU address the lease mapping's at that offset; no page shared with
// a live buffer of any thread, in a bitmap of the arena's pages) and its
// first and last byte are written with a tag that is checked again before
// it is freed. After the steps the arena's used_bytes() must be what the
// threads hold, and after the drain it must count nothing. Throughput: the
// steps' successful allocations and frees per second of wall time, from
// the start signal to the last thread's last step (checks and touches
// included; "in calls" says which share of the threads' time was spent
// inside the timed calls).
//
// The RPC pair: Pool.Allocate (max_segments 1) + Pool.Release with raw
// gRPC stubs over the unix socket, as bench/rpc_benchmark; one after the
// other, on the first --rpc-pairs requests of thread 0's step stream (sizes
// capped to half the pool left beside the arena: never reached with 8 MiB
// requests), after 100 untimed pairs of 64 KiB; the arena's lease is live.
//
// DPDK (-DPHYSPOOL_WITH_DPDK): rte_malloc_socket/rte_free on thread 0's
// 1-thread plan (same requests, same 1 GiB capacity), in a heap of -m MiB,
// as bench/dpdk_compare (a boundary is asked as the size's power of two as
// alignment; the whole heap is written once before). The EAL arguments come
// first, then "--" and the flags:
//
//   arena_benchmark [EAL args --] [--steps N] [--threads 1,2,8] [--seed S]
//                   [--rpc-pairs N] [--quick]
//
// --quick: 2000 steps and 200 RPC pairs (the ctest smoke run). Exit 1 if
// an answer broke a constraint or a call failed other than for room.
#ifdef PHYSPOOL_WITH_DPDK
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#endif
#include <sched.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "bench/churn.h"
#include "physpool/client.h"
#include "tests/server/daemon.h"

namespace physpool::bench {
namespace {

using testing::Daemon;

constexpr uint64_t kPage = ChurnRequest::kPage;
constexpr uint64_t kArenaBytes = uint64_t{1} << 30;
constexpr uint64_t kSegmentBytes = uint64_t{3} << 29;  // 1.5 GiB
constexpr double kTarget = 0.80;

double NowNs() {
  return std::chrono::duration<double, std::nano>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// --- Checks shared by the threads

// One bit per page of [lo, hi), set while a live allocation of any thread
// covers the page. Lock-free. Callers pass page-aligned ranges inside it.
class PageMap {
 public:
  PageMap(uint64_t lo, uint64_t hi)
      : lo_(lo), words_((hi - lo) / kPage / 64 + 1) {}
  // Sets the pages of [a, a + bytes); false if one was set already (an
  // overlap; the rest are set all the same).
  bool Claim(uint64_t a, uint64_t bytes) { return Apply(a, bytes, true); }
  // Clears them; false if one was clear.
  bool Unclaim(uint64_t a, uint64_t bytes) { return Apply(a, bytes, false); }

 private:
  bool Apply(uint64_t a, uint64_t bytes, bool set) {
    uint64_t p = (a - lo_) / kPage;
    const uint64_t end = p + bytes / kPage;
    bool ok = true;
    while (p < end) {
      const uint64_t bit = p % 64, n = std::min<uint64_t>(64 - bit, end - p);
      const uint64_t mask = (n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1)
                            << bit;
      std::atomic<uint64_t>& w = words_[p / 64];
      if (set) {
        ok &= (w.fetch_or(mask, std::memory_order_relaxed) & mask) == 0;
      } else {
        ok &= (w.fetch_and(~mask, std::memory_order_relaxed) & mask) == mask;
      }
      p += n;
    }
    return ok;
  }
  const uint64_t lo_;
  std::vector<std::atomic<uint64_t>> words_;  // value-initialised: zero
};

// A ChurnTarget whose allocations are mapped in this process: the runner
// writes their first and last byte (untimed) and asks the target to check
// what only it knows. Used by one thread.
class MappedTarget : public ChurnTarget {
 public:
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

// --- The arena

// The arena's one lease: its run [lo, hi) and where lo is mapped here.
struct ArenaLayout {
  uint64_t lo = 0, hi = 0;
  uint8_t* cpu_lo = nullptr;
};

// One thread's view of the shared arena: its live Buffers in slots (the
// handle is the slot).
class ArenaTarget : public MappedTarget {
 public:
  ArenaTarget(Arena* arena, const ArenaLayout& l) : arena_(arena), l_(l) {
    slots_.reserve(1 << 14);  // no reallocation inside a timed call
  }
  std::string Name() const override { return "arena"; }
  uint64_t Lo() const override { return l_.lo; }
  uint64_t Hi() const override { return l_.hi; }

  std::optional<uint64_t> Allocate(const ChurnRequest& r,
                                   uint64_t* handle) override {
    BufferOptions o;
    o.bytes = r.bytes;
    o.alignment = r.alignment;
    o.boundary = r.boundary;
    o.max_segments = 1;
    absl::StatusOr<Buffer> b = arena_->Allocate(o);
    if (!b.ok()) {
      if (!absl::IsResourceExhausted(b.status()) && error_.empty()) {
        error_ = b.status().ToString();
      }
      return std::nullopt;
    }
    if (free_.empty()) {
      free_.push_back(slots_.size());
      slots_.emplace_back();
    }
    *handle = free_.back();
    free_.pop_back();
    Buffer& s = slots_[*handle];
    s = *std::move(b);
    return s.runs().empty() ? 0 : s.runs().front().iova;
  }
  void Free(uint64_t handle) override {
    slots_[handle].Free();
    free_.push_back(handle);
  }
  uint8_t* Cpu(uint64_t handle) const override {
    return static_cast<uint8_t*>(slots_[handle].runs().front().cpu);
  }
  std::string Check(uint64_t handle, const ChurnRequest& r) const override;
  std::string Error() const override { return error_; }

 private:
  Arena* const arena_;
  const ArenaLayout l_;
  std::vector<Buffer> slots_;
  std::vector<uint64_t> free_;  // free slots
  std::string error_;
};

std::string ArenaTarget::Check(uint64_t handle, const ChurnRequest& r) const {
  const Buffer& b = slots_[handle];
  const uint64_t page = arena_->page_size();
  const uint64_t want = (r.bytes + page - 1) / page * page;
  if (b.runs().size() != 1) {
    return absl::StrCat("buffer of ", r.bytes, " bytes has ", b.runs().size(),
                        " runs (max_segments 1)");
  }
  const Buffer::Run& run = b.runs().front();
  if (run.bytes != want || b.bytes() != want) {
    return absl::StrCat("buffer of ", r.bytes, " bytes: run ", run.bytes,
                        ", bytes() ", b.bytes(), ", want ", want);
  }
  if (run.iova < l_.lo || run.iova + run.bytes > l_.hi ||
      static_cast<uint8_t*>(run.cpu) != l_.cpu_lo + (run.iova - l_.lo)) {
    return absl::StrCat("buffer at IOVA 0x", absl::Hex(run.iova), " has CPU ",
                        absl::Hex(reinterpret_cast<uintptr_t>(run.cpu)),
                        ", not the lease mapping's at that offset");
  }
  return "";
}

// The arena under test. Members in this order: the arena goes first.
struct ArenaSetup {
  std::unique_ptr<Client> client;
  std::unique_ptr<Arena> arena;
  std::string lease_id;
  ArenaLayout layout;
};

// One buffer of the whole arena: checks it is the lease's run, learns its
// CPU address, writes every page once and msyncs them (the sim backing is
// a file), and frees it.
absl::Status Probe(ArenaSetup* s) {
  BufferOptions o;
  o.bytes = kArenaBytes;
  absl::StatusOr<Buffer> b = s->arena->Allocate(o);
  if (!b.ok()) return b.status();
  const Buffer::Run& run = b->runs().front();
  if (b->runs().size() != 1 || run.iova != s->layout.lo ||
      run.bytes != kArenaBytes) {
    return absl::InternalError("a buffer of the whole arena is not its lease");
  }
  s->layout.cpu_lo = static_cast<uint8_t*>(run.cpu);
  for (uint64_t off = 0; off < run.bytes; off += kPage)
    s->layout.cpu_lo[off] = 1;
  if (msync(run.cpu, run.bytes, MS_SYNC) != 0) {
    return absl::ErrnoToStatus(errno, "msync of the arena");
  }
  return absl::OkStatus();  // ~Buffer frees it
}

absl::StatusOr<ArenaSetup> MakeArena(const Daemon& d, bool best_fit) {
  ArenaSetup s;
  ClientOptions co;
  co.endpoint = "unix:" + d.socket();
  co.token = testing::kAlice;
  absl::StatusOr<std::unique_ptr<Client>> c = Client::Connect(co);
  if (!c.ok()) return c.status();
  s.client = *std::move(c);
  if (s.client->page_size() != kPage) {
    return absl::FailedPreconditionError(
        absl::StrCat("daemon page size ", s.client->page_size(), ", not 4096"));
  }
  ArenaOptions ao;
  ao.best_fit = best_fit;
  ao.bytes = kArenaBytes;
  ao.max_segments = 1;
  ao.label = "arena_benchmark";
  absl::StatusOr<std::unique_ptr<Arena>> a = s.client->CreateArena(ao);
  if (!a.ok()) return a.status();
  s.arena = *std::move(a);
  const std::vector<std::string> ids = s.arena->lease_ids();
  if (ids.size() != 1) return absl::InternalError("arena: not one lease");
  s.lease_id = ids[0];
  auto runs = s.client->LeaseRuns(s.lease_id);
  if (!runs.ok()) return runs.status();
  if (runs->size() != 1 || (*runs)[0].second != kArenaBytes) {
    return absl::InternalError("arena lease: not one run of 1 GiB");
  }
  s.layout.lo = (*runs)[0].first;
  s.layout.hi = s.layout.lo + kArenaBytes;
  if (absl::Status p = Probe(&s); !p.ok()) return p;
  return s;
}

// --- The runner

// One thread's share of a run.
struct Plan {
  uint64_t seed = 24;
  uint64_t steps = 0;
  uint64_t capacity = 0;  // bytes; the target is kTarget of it
};

// What one thread measured over its steps, and found.
struct ThreadResult {
  std::vector<double> alloc_ns, free_ns;
  std::vector<RequestClass> step_class, free_class;
  std::vector<uint8_t> step_failed;
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
      : t_(t), p_(p), pages_(pages), pick_(p.seed ^ 0x5bd1e995) {}
  ThreadResult Run(Phases* ph);

 private:
  struct Live {
    uint64_t handle, addr, bytes;
    RequestClass klass;
    uint8_t tag;
    bool checked;  // its pages are claimed and its bytes tagged
  };
  // Allocates r (timed into *ns unless null); checks, tags and records it.
  bool Allocate(const ChurnRequest& r, std::vector<double>* ns);
  // Frees a random live allocation (timed, recorded if `record`).
  void FreeOne(bool record);
  std::string CheckAnswer(const ChurnRequest& r, uint64_t a, uint64_t handle);
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

std::string ChurnThread::CheckAnswer(const ChurnRequest& r, uint64_t a,
                                     uint64_t handle) {
  const uint64_t e = a + r.bytes;
  if (a % r.EffectiveAlignment() != 0) {
    return absl::StrCat("address 0x", absl::Hex(a), " not aligned to ",
                        r.EffectiveAlignment());
  }
  if (r.boundary != 0 && ((a ^ (e - 1)) & ~(r.boundary - 1)) != 0) {
    return absl::StrCat("[0x", absl::Hex(a), ", 0x", absl::Hex(e),
                        ") crosses a multiple of ", r.boundary);
  }
  if (a < t_.Lo() || e > t_.Hi() || e < a) {
    return absl::StrCat("[0x", absl::Hex(a), ", 0x", absl::Hex(e),
                        ") outside the range");
  }
  if (std::string bad = t_.Check(handle, r); !bad.empty()) return bad;
  if (!pages_->Claim(a, r.bytes)) {
    return absl::StrCat("[0x", absl::Hex(a), ", 0x", absl::Hex(e),
                        ") overlaps a live allocation");
  }
  return "";
}

bool ChurnThread::Allocate(const ChurnRequest& r, std::vector<double>* ns) {
  uint64_t handle = 0;
  const double t0 = NowNs();
  const std::optional<uint64_t> a = t_.Allocate(r, &handle);
  const double dt = NowNs() - t0;
  if (ns != nullptr) ns->push_back(dt);
  if (!a.has_value()) return false;
  const std::string bad = CheckAnswer(r, *a, handle);
  if (!bad.empty()) Violation(bad);
  Live v{handle, *a, r.bytes, r.Class(), 0, bad.empty()};
  if (v.checked) {
    v.tag = next_tag_ = static_cast<uint8_t>(next_tag_ % 255 + 1);
    uint8_t* cpu = t_.Cpu(handle);
    cpu[0] = v.tag;
    cpu[r.bytes - 1] = v.tag;
  }
  live_.push_back(v);
  live_bytes_ += r.bytes;
  return true;
}

void ChurnThread::FreeOne(bool record) {
  const size_t k = pick_() % live_.size();
  const Live v = live_[k];
  live_[k] = live_.back();
  live_.pop_back();
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
  const double t0 = NowNs();
  t_.Free(v.handle);
  const double dt = NowNs() - t0;
  if (record) {
    res_.free_ns.push_back(dt);
    res_.free_class.push_back(v.klass);
  }
}

ThreadResult ChurnThread::Run(Phases* ph) {
  // Two streams, as RunChurn: the steps are the same however long the
  // pre-fill took.
  ChurnStream prefill(p_.seed), stream(p_.seed ^ 0x9e3779b97f4a7c15);
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

// A whole run: its threads' figures merged.
struct RunSummary {
  std::string name;
  int threads = 0;
  uint64_t steps = 0;
  std::vector<double> alloc_ns, free_ns;
  std::vector<RequestClass> step_class, free_class;
  std::vector<uint8_t> step_failed;
  uint64_t failures = 0, violations = 0;
  std::string first_violation, error;
  double wall_s = 0, busy_s = 0;  // busy: summed over the threads' calls
  double occupancy_mean = 0;      // live requested bytes / capacity
  double used_end = -1;   // what the allocator says is in use, at the end
  uint64_t live_end = 0;  // requested bytes live then (all threads)
  double OpsPerSecond() const {
    return (steps - failures + free_ns.size()) / wall_s;
  }
};

void Merge(ThreadResult& t, RunSummary* s) {
  auto append = [](auto& to, const auto& from) {
    to.insert(to.end(), from.begin(), from.end());
  };
  append(s->alloc_ns, t.alloc_ns);
  append(s->free_ns, t.free_ns);
  append(s->step_class, t.step_class);
  append(s->free_class, t.free_class);
  append(s->step_failed, t.step_failed);
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

// Runs `threads` threads of the workload `base` (seed + t, its capacity
// and steps split evenly), each on its own target from make(t). `used`
// (optional) is asked, between the steps and the drain, which share of
// the capacity the allocator holds.
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
  for (ThreadResult& r : results) {
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

// --- The RPC pair

struct RpcFigures {
  std::vector<double> allocate_ns, release_ns, pair_ns;
  uint64_t failed = 0;
  std::string first_error;
};

// One Allocate + Release of `req` (tenant alice); timed into *f unless null.
bool RpcPair(v1::Pool::Stub* pool, const v1::AllocateRequest& req,
             RpcFigures* f, std::string* error) {
  v1::AllocateResponse resp;
  auto actx = testing::Ctx(testing::kAlice);
  const double t0 = NowNs();
  grpc::Status s = pool->Allocate(actx.get(), req, &resp);
  const double t1 = NowNs();
  if (!s.ok()) {
    *error = absl::StrCat("Allocate ", req.bytes(), ": ", s.error_message());
    return false;
  }
  v1::ReleaseRequest rel;
  rel.set_lease_id(resp.lease().id());
  v1::ReleaseResponse rresp;
  auto rctx = testing::Ctx(testing::kAlice);
  const double t2 = NowNs();
  s = pool->Release(rctx.get(), rel, &rresp);
  const double t3 = NowNs();
  if (!s.ok()) {
    *error = absl::StrCat("Release: ", s.error_message());
    return false;
  }
  if (f != nullptr) {
    f->allocate_ns.push_back(t1 - t0);
    f->release_ns.push_back(t3 - t2);
    f->pair_ns.push_back(t3 - t0);
  }
  return true;
}

// `n` pairs on the first n requests of the stream of thread 0's steps,
// each capped to `cap` bytes, after 100 untimed pairs of 64 KiB.
RpcFigures RunRpcPairs(const Daemon& d, uint64_t seed, uint64_t n,
                       uint64_t cap) {
  RpcFigures f;
  auto pool = v1::Pool::NewStub(d.UnixChannel());
  std::string error;
  v1::AllocateRequest warm;
  warm.set_bytes(64 << 10);
  warm.set_max_segments(1);
  for (int i = 0; i < 100; ++i)
    (void)RpcPair(pool.get(), warm, nullptr, &error);
  ChurnStream stream(seed ^ 0x9e3779b97f4a7c15);
  for (uint64_t i = 0; i < n; ++i) {
    const ChurnRequest r = stream.Next();
    v1::AllocateRequest req;
    req.set_bytes(std::min(r.bytes, cap));
    req.set_alignment(r.alignment);
    req.set_boundary(r.boundary);
    req.set_max_segments(1);
    if (!RpcPair(pool.get(), req, &f, &error) && f.failed++ == 0) {
      f.first_error = error;
    }
  }
  return f;
}

// --- DPDK

#ifdef PHYSPOOL_WITH_DPDK
// rte_malloc_socket / rte_free, as bench/dpdk_compare's MallocTarget.
class MallocTarget : public MappedTarget {
 public:
  MallocTarget(uint64_t lo, uint64_t hi) : lo_(lo), hi_(hi) {}
  std::string Name() const override { return "rte_malloc"; }
  uint64_t Lo() const override { return lo_; }
  uint64_t Hi() const override { return hi_; }
  std::optional<uint64_t> Allocate(const ChurnRequest& r,
                                   uint64_t* handle) override {
    uint64_t align = r.EffectiveAlignment();
    if (r.boundary != 0) align = std::max(align, NextPow2(r.bytes));
    void* p = rte_malloc_socket(nullptr, r.bytes, static_cast<unsigned>(align),
                                SOCKET_ID_ANY);
    if (p == nullptr) return std::nullopt;
    *handle = reinterpret_cast<uint64_t>(p);
    return rte_malloc_virt2iova(p);
  }
  void Free(uint64_t handle) override {
    rte_free(reinterpret_cast<void*>(handle));
  }
  uint8_t* Cpu(uint64_t handle) const override {
    return reinterpret_cast<uint8_t*>(handle);
  }

 private:
  uint64_t lo_, hi_;
};

// The IOVA range of DPDK's memory: the union of its memseg lists.
int RangeOf(const rte_memseg_list* msl, void* arg) {
  auto* r = static_cast<std::pair<uint64_t, uint64_t>*>(arg);
  if (msl->len == 0) return 0;
  const uint64_t lo = reinterpret_cast<uint64_t>(msl->base_va);
  r->first = std::min(r->first, lo);
  r->second = std::max(r->second, lo + msl->len);
  return 0;
}

rte_malloc_socket_stats HeapStats() {
  rte_malloc_socket_stats st{};
  rte_malloc_get_socket_stats(static_cast<int>(rte_socket_id()), &st);
  return st;
}

// The EAL from argv; the index of the first flag after "--", or -1.
int InitDpdk(int argc, char** argv) {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const bool saved = sched_getaffinity(0, sizeof(cpus), &cpus) == 0;
  const int eal = rte_eal_init(argc, argv);
  if (eal < 0) {
    std::fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
    return -1;
  }
  // -l 0 pinned this thread to core 0; the arena's threads and physpoold
  // (forked from here) would inherit that.
  if (saved) sched_setaffinity(0, sizeof(cpus), &cpus);
  return eal + 1;
}

// rte_malloc on thread 0's 1-thread plan, after writing the whole heap
// once (one allocation of its largest free block).
RunSummary RunDpdk(const Plan& plan) {
  std::pair<uint64_t, uint64_t> range{~uint64_t{0}, 0};
  rte_memseg_list_walk(RangeOf, &range);
  const size_t len = HeapStats().greatest_free_size / kPage * kPage - kPage;
  if (void* p = rte_malloc(nullptr, len, kPage); p != nullptr) {
    std::memset(p, 0xa5, len);
    rte_free(p);
  }
  const rte_malloc_socket_stats st = HeapStats();
  std::printf("DPDK: heap %zu bytes (%zu free, largest free %zu) in [%#" PRIx64
              ", %#" PRIx64 ")\n",
              st.heap_totalsz_bytes, st.heap_freesz_bytes,
              st.greatest_free_size, range.first, range.second);
  return RunThreads(
      "rte_malloc", 1, plan,
      [&](int) {
        return std::make_unique<MallocTarget>(range.first, range.second);
      },
      [] {
        const rte_malloc_socket_stats s = HeapStats();
        return static_cast<double>(s.heap_allocsz_bytes) / s.heap_totalsz_bytes;
      });
}
#endif  // PHYSPOOL_WITH_DPDK

// --- Figures and tables

std::string Us(double ns) {
  char b[32];
  std::snprintf(b, sizeof(b), ns < 10000 ? "%.2f" : "%.0f", ns / 1000);
  return b;
}

std::string Pct(double fraction) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.1f %%", 100 * fraction);
  return b;
}

constexpr unsigned kAll = 7;
constexpr unsigned kPlainAndAligned =
    1u << static_cast<int>(RequestClass::kPlain) |
    1u << static_cast<int>(RequestClass::kAligned);
bool In(unsigned classes, RequestClass c) {
  return classes & (1u << static_cast<int>(c));
}

// Quantiles (ns) of a run's steps (and frees) of `classes`.
struct Fig {
  double a50 = 0, a99 = 0, a999 = 0, f50 = 0, f99 = 0, f999 = 0;
  double a50ok = 0;  // over the allocations that succeeded
  uint64_t steps = 0, failed = 0;
};
Fig Figures(const RunSummary& r, unsigned classes) {
  std::vector<double> a, ok, fr;
  Fig f;
  for (size_t i = 0; i < r.alloc_ns.size(); ++i) {
    if (!In(classes, r.step_class[i])) continue;
    a.push_back(r.alloc_ns[i]);
    if (!r.step_failed[i]) ok.push_back(r.alloc_ns[i]);
    ++f.steps;
    f.failed += r.step_failed[i];
  }
  for (size_t i = 0; i < r.free_ns.size(); ++i) {
    if (In(classes, r.free_class[i])) fr.push_back(r.free_ns[i]);
  }
  f.a50 = Quantile(a, 0.5);
  f.a99 = Quantile(a, 0.99);
  f.a999 = Quantile(a, 0.999);
  f.a50ok = Quantile(ok, 0.5);
  f.f50 = Quantile(fr, 0.5);
  f.f99 = Quantile(fr, 0.99);
  f.f999 = Quantile(fr, 0.999);
  return f;
}

void PrintRuns(const std::vector<RunSummary>& runs) {
  std::printf(
      "\nEach call timed alone. failed: allocations of the steps that found "
      "no room; allocs+frees/s: the steps' successful calls per second of "
      "wall time (checks and touches included); in calls: the share of the "
      "threads' wall time spent inside the timed calls; mean occupancy: live "
      "requested bytes / capacity after each step; in use at end: what the "
      "allocator counts in use after the last step, of its capacity (arena: "
      "used_bytes(); rte_malloc: heap_allocsz_bytes, headers included).\n");
  std::printf(
      "\n| allocator | threads | steps | alloc p50 | alloc p99 | alloc p99.9 "
      "| free p50 | free p99 | free p99.9 | failed | allocs+frees/s | in "
      "calls | mean occupancy | in use at end |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const RunSummary& r : runs) {
    const Fig f = Figures(r, kAll);
    const double in_calls = r.busy_s / (r.threads * r.wall_s);
    std::printf(
        "| %s | %d | %" PRIu64
        " | %s µs | %s µs | %s µs | %s µs | %s µs | %s µs | %.2f %% | %.0f | "
        "%.0f %% | %.1f %% | %s |\n",
        r.name.c_str(), r.threads, r.steps, Us(f.a50).c_str(),
        Us(f.a99).c_str(), Us(f.a999).c_str(), Us(f.f50).c_str(),
        Us(f.f99).c_str(), Us(f.f999).c_str(), 100.0 * r.failures / r.steps,
        r.OpsPerSecond(), 100 * in_calls, 100 * r.occupancy_mean,
        r.used_end < 0 ? "-" : Pct(r.used_end).c_str());
  }
}

void PrintRpc(const RpcFigures& rpc) {
  std::printf(
      "\nphyspoold's RPC pair over its unix socket (raw gRPC stubs, one "
      "after the other):\n\n| RPC | n | p50 | p99 | p99.9 |\n"
      "|---|---|---|---|---|\n");
  const std::pair<const char*, const std::vector<double>*> rows[] = {
      {"Allocate", &rpc.allocate_ns},
      {"Release", &rpc.release_ns},
      {"Allocate + Release", &rpc.pair_ns}};
  for (const auto& [name, ns] : rows) {
    std::vector<double> v = *ns;
    const double p50 = Quantile(v, 0.5), p99 = Quantile(v, 0.99),
                 p999 = Quantile(v, 0.999);
    std::printf("| %s | %zu | %s µs | %s µs | %s µs |\n", name, v.size(),
                Us(p50).c_str(), Us(p99).c_str(), Us(p999).c_str());
  }
}

// One row of the targets' table: `ratio` against `limit` (<= or >=).
void Target(const std::string& what, double ratio, double a, double b,
            bool at_most, double limit) {
  const bool met = at_most ? ratio <= limit : ratio >= limit;
  std::printf("| %s | %.3g× (%s µs vs %s µs) | %s |\n", what.c_str(), ratio,
              Us(a).c_str(), Us(b).c_str(), met ? "met" : "**NOT met**");
}

const RunSummary* WithThreads(const std::vector<RunSummary>& runs, int n) {
  for (const RunSummary& r : runs) {
    if (r.name == "arena" && r.threads == n) return &r;
  }
  return nullptr;
}

// The issue's targets, in ratios of this run.
void PrintTargets(const std::vector<RunSummary>& runs, const RpcFigures& rpc,
                  const RunSummary* dpdk) {
  const RunSummary* one = WithThreads(runs, 1);
  const RunSummary* eight = WithThreads(runs, 8);
  std::printf(
      "\nTargets (arena: its 1-thread run):\n\n| target | measured | "
      "|\n|---|---|---|\n");
  if (one != nullptr && dpdk != nullptr) {
    for (const auto& [classes, label] :
         {std::make_pair(kAll, "all requests"),
          std::make_pair(kPlainAndAligned, "plain + aligned")}) {
      const Fig a = Figures(*one, classes), m = Figures(*dpdk, classes);
      Target(absl::StrCat("arena alloc p50 ≤ rte_malloc's (", label, ")"),
             a.a50 / m.a50, a.a50, m.a50, true, 1);
      Target(
          absl::StrCat("arena alloc p99 ≤ 1/10 of rte_malloc's (", label, ")"),
          a.a99 / m.a99, a.a99, m.a99, true, 0.1);
    }
    const Fig a = Figures(*one, kAll), m = Figures(*dpdk, kAll);
    Target(
        "arena alloc p50 ≤ rte_malloc's over the allocations that "
        "succeeded (all requests; not a target)",
        a.a50ok / m.a50ok, a.a50ok, m.a50ok, true, 1);
  } else {
    std::printf(
        "| arena alloc p50 ≤ rte_malloc's; p99 ≤ 1/10 of it | n/a "
        "(DPDK not built in) | |\n");
  }
  std::vector<double> pair = rpc.pair_ns;
  const double pair50 = Quantile(pair, 0.5);
  if (one != nullptr && !pair.empty()) {
    const Fig a = Figures(*one, kAll);
    Target("RPC pair p50 ≥ 100× arena alloc p50", pair50 / a.a50, pair50, a.a50,
           false, 100);
    Target("RPC pair p50 ≥ 100× arena alloc p50 + free p50 (not a target)",
           pair50 / (a.a50 + a.f50), pair50, a.a50 + a.f50, false, 100);
  }
  if (one != nullptr && eight != nullptr) {
    const double r = eight->OpsPerSecond() / one->OpsPerSecond();
    std::printf(
        "| 8 threads' allocs+frees/s ≥ 1 thread's | %.3g× (%.0f/s vs "
        "%.0f/s) | %s |\n",
        r, eight->OpsPerSecond(), one->OpsPerSecond(),
        r >= 1 ? "met" : "**NOT met**");
  }
}

std::string Commit() {
  const std::string git = "git -C '" PHYSPOOL_SOURCE_DIR "' ";
  const testing::RunResult head = testing::RunCommand(git + "rev-parse HEAD");
  if (head.code != 0) return "unknown (not a git checkout)";
  const testing::RunResult dirty =
      testing::RunCommand(git + "status --porcelain");
  return absl::StrCat(absl::StripAsciiWhitespace(head.output),
                      dirty.output.empty() ? "" : " + uncommitted changes");
}

struct Flags {
  uint64_t steps = 200000;  // in all, split among a run's threads
  uint64_t seed = 24;
  uint64_t rpc_pairs = 2000;
  std::vector<int> threads = {1, 2, 8};
  bool best_fit = true;  // --placement bestfit|nextfit
};

bool ParseFlags(int argc, char** argv, int first, Flags* f) {
  for (int i = first; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      f->steps = 2000;
      f->rpc_pairs = 200;
      continue;
    }
    const char* v = i + 1 < argc ? argv[++i] : "";
    bool ok = true;
    if (a == "--steps") {
      ok = absl::SimpleAtoi(v, &f->steps) && f->steps > 0;
    } else if (a == "--seed") {
      ok = absl::SimpleAtoi(v, &f->seed);
    } else if (a == "--placement") {
      ok = std::strcmp(v, "bestfit") == 0 || std::strcmp(v, "nextfit") == 0;
      f->best_fit = std::strcmp(v, "bestfit") == 0;
    } else if (a == "--rpc-pairs") {
      ok = absl::SimpleAtoi(v, &f->rpc_pairs);
    } else if (a == "--threads") {
      f->threads.clear();
      for (absl::string_view n : absl::StrSplit(v, ',')) {
        int t = 0;
        ok &= absl::SimpleAtoi(n, &t) && t >= 1 && t <= 256;
        f->threads.push_back(t);
      }
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: %s [EAL args --] [--steps N] [--threads 1,2,8] "
                   "[--seed S] [--rpc-pairs N] [--placement bestfit|nextfit] "
                   "[--quick]\n(bad: %s %s)\n",
                   argv[0], a.c_str(), v);
      return false;
    }
  }
  return true;
}

void PrintHeader(const Flags& f, const ArenaSetup& s) {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  sched_getaffinity(0, sizeof(cpus), &cpus);
  std::printf(
      "arena_benchmark: commit %s\ncores: %d (nproc), %u "
      "(std::thread::hardware_concurrency)\n"
      "physpoold: sim, one segment of %" PRIu64
      " bytes, store on, unix socket; arena: lease %s, one run "
      "[%#" PRIx64 ", %#" PRIx64 "), page %" PRIu64
      ", %s, no growth\n"
      "workload: seed %" PRIu64 ", %" PRIu64
      " steps per run split evenly among its threads (thread t: seed + t, "
      "1/threads of the arena as its capacity, target %.0f %% of it); sizes "
      "4 KiB-8 MiB log-uniform (whole pages), 1/3 aligned 8 KiB-2 MiB, 1/10 "
      "boundary 2-8x the size's power of two, the rest plain; max_segments "
      "1\n",
      Commit().c_str(), CPU_COUNT(&cpus), std::thread::hardware_concurrency(),
      kSegmentBytes, s.lease_id.c_str(), s.layout.lo, s.layout.hi,
      s.arena->page_size(), f.best_fit ? "best fit" : "next fit", f.seed,
      f.steps, 100 * kTarget);
}

// One run of the arena. After the steps the arena must count in use what
// the threads hold (requests are whole pages); every buffer freed, nothing.
RunSummary RunArena(ArenaSetup& s, const Plan& plan, int threads) {
  RunSummary r = RunThreads(
      "arena", threads, plan,
      [&](int) {
        return std::make_unique<ArenaTarget>(s.arena.get(), s.layout);
      },
      [&] { return static_cast<double>(s.arena->used_bytes()) / kArenaBytes; });
  const double held = static_cast<double>(r.live_end) / kArenaBytes;
  if (r.error.empty() && r.used_end != held) {
    r.error = absl::StrCat("after the steps the arena counted ",
                           r.used_end * kArenaBytes,
                           " bytes in use, the threads held ", r.live_end);
  }
  if (r.error.empty() &&
      (s.arena->live_buffers() != 0 || s.arena->used_bytes() != 0)) {
    r.error = absl::StrCat("every buffer freed, the arena still counts ",
                           s.arena->live_buffers(), " live buffers and ",
                           s.arena->used_bytes(), " bytes in use");
  }
  return r;
}

// 0 if every answer was right and every call failed only for room.
int Verdict(const std::vector<RunSummary>& runs, const RpcFigures& rpc) {
  int bad = 0;
  for (const RunSummary& r : runs) {
    if (r.violations != 0) {
      std::fprintf(
          stderr, "%s, %d threads: %" PRIu64 " bad answers, first: %s\n",
          r.name.c_str(), r.threads, r.violations, r.first_violation.c_str());
      bad = 1;
    }
    if (!r.error.empty()) {
      std::fprintf(stderr, "%s, %d threads: a call failed: %s\n",
                   r.name.c_str(), r.threads, r.error.c_str());
      bad = 1;
    }
  }
  if (rpc.failed != 0) {
    std::fprintf(stderr, "RPC pair: %" PRIu64 " failed, first: %s\n",
                 rpc.failed, rpc.first_error.c_str());
    bad = 1;
  }
  return bad;
}

int Main(int argc, char** argv) {
  int first = 1;
#ifdef PHYSPOOL_WITH_DPDK
  first = InitDpdk(argc, argv);
  if (first < 0) return 2;
#endif
  if (first < argc && std::strcmp(argv[first], "--") == 0) ++first;
  Flags flags;
  if (!ParseFlags(argc, argv, first, &flags)) return 2;
  testing::DaemonOptions o;
  o.default_ttl_seconds = 600;  // the harness's max_ttl_seconds
  o.segments = {
      absl::StrCat("{bytes: ", kSegmentBytes, ", freelist: 0, numa: 0}")};
  absl::StatusOr<std::unique_ptr<Daemon>> d = Daemon::Start(o);
  if (!d.ok()) {
    std::fprintf(stderr, "physpoold: %s\n", d.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<ArenaSetup> s = MakeArena(**d, flags.best_fit);
  if (!s.ok()) {
    std::fprintf(stderr, "arena: %s\n", s.status().ToString().c_str());
    return 1;
  }
  PrintHeader(flags, *s);
  const Plan plan{flags.seed, flags.steps, kArenaBytes};
  std::vector<RunSummary> runs;
  for (int t : flags.threads) {
    std::fprintf(stderr, "arena, %d thread(s)...\n", t);
    runs.push_back(RunArena(*s, plan, t));
  }
  std::fprintf(stderr, "RPC pairs...\n");
  const RpcFigures rpc = RunRpcPairs(**d, flags.seed, flags.rpc_pairs,
                                     (kSegmentBytes - kArenaBytes) / 2);
  std::optional<RunSummary> dpdk;
#ifdef PHYSPOOL_WITH_DPDK
  std::fprintf(stderr, "rte_malloc...\n");
  dpdk = RunDpdk(plan);
  runs.push_back(*dpdk);
#else
  std::printf(
      "DPDK: not built in (install libdpdk-dev: make bench-arena does)\n");
#endif
  PrintRuns(runs);
  PrintRpc(rpc);
  PrintTargets(runs, rpc, dpdk ? &*dpdk : nullptr);
  const int bad = Verdict(runs, rpc);
#ifdef PHYSPOOL_WITH_DPDK
  rte_eal_cleanup();
#endif
  return bad;
}

}  // namespace
}  // namespace physpool::bench

int main(int argc, char** argv) { return physpool::bench::Main(argc, argv); }
