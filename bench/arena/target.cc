// SPDX-License-Identifier: Apache-2.0
#include "bench/arena/target.h"

#include <sys/mman.h>

#include <cerrno>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace physpool::bench {
namespace {

constexpr uint64_t kPage = ChurnRequest::kPage;

// One thread's view of the shared arena: its live Buffers in slots (the
// handle is the slot).
class ArenaTarget : public MappedTarget {
 public:
  ArenaTarget(Arena* arena, const ArenaLayout& l)
      : MappedTarget(l.lo, l.hi), arena_(arena), l_(l) {
    slots_.reserve(1 << 14);  // no reallocation inside a timed call
  }
  std::string Name() const override { return "arena"; }
  std::optional<uint64_t> Allocate(const ChurnRequest& r,
                                   uint64_t* handle) override;
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

std::optional<uint64_t> ArenaTarget::Allocate(const ChurnRequest& r,
                                              uint64_t* handle) {
  absl::StatusOr<Buffer> b = arena_->Allocate(OneRunRequest<BufferOptions>(r));
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

absl::StatusOr<std::unique_ptr<Client>> Connect(const testing::Daemon& d) {
  ClientOptions co;
  co.endpoint = "unix:" + d.socket();
  co.token = testing::kAlice;
  absl::StatusOr<std::unique_ptr<Client>> c = Client::Connect(co);
  if (c.ok() && (*c)->page_size() != kPage) {
    return absl::FailedPreconditionError(
        absl::StrCat("daemon page size ", (*c)->page_size(), ", not 4096"));
  }
  return c;
}

}  // namespace

absl::StatusOr<ArenaSetup> MakeArena(const testing::Daemon& d, bool best_fit) {
  ArenaSetup s;
  s.best_fit = best_fit;
  absl::StatusOr<std::unique_ptr<Client>> c = Connect(d);
  if (!c.ok()) return c.status();
  s.client = *std::move(c);
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

RunSummary RunArena(ArenaSetup& s, const Plan& plan, int threads) {
  RunSummary r = RunThreads(
      "arena", threads, plan,
      [&](int) {
        return std::make_unique<ArenaTarget>(s.arena.get(), s.layout);
      },
      [&] { return static_cast<double>(s.arena->used_bytes()) / kArenaBytes; });
  // Requests are whole pages: the arena counts in use what the threads hold.
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

}  // namespace physpool::bench
