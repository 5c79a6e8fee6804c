// SPDX-License-Identifier: Apache-2.0
// Test-only: the memory components (memory/) wired as lease/parts.h wires
// them — a pglist::Pool of the source's segments, a Scrubber, LeaseViews, a
// Committer, a DurableLog, Segments, a DeviceMap, a Recycler and a
// Quarantine — over a TurnTesting (Coordinator and TurnHost), a FakeClock,
// a memory source (a SimSource in a temporary directory, or one the test
// gives) and, if asked, a real SQLite LeaseStore whose writes a trigger
// can make fail.
//
// Every step runs as the coordinator runs it: in a turn inside a
// Committer::Scope, so the store writes it submits are applied on the
// test's thread when it ends, and their completions (turns of their own
// through the TurnTesting) have run by then. Scrub spells out the zeroing
// thread (threads.cc): take in a turn, zero with no turn, apply in a turn.
//
// State: the temporary directory, the source, the store, the components,
// the FakeClock and TurnTesting. Thread safety: not thread-safe (one test
// thread).
// I/O: a directory under /tmp (removed at the end) with the SimSource's
// files and, if asked, the SQLite store, which Ints, Sql and FailStore
// read and alter directly; Fill and CountNot write and read the backing.
// REQUIRES: Start before anything else; a source the test gives is
// started and outlives it.
#ifndef PHYSPOOL_SERVER_MEMORY_TESTING_MEMORY_PARTS_H_
#define PHYSPOOL_SERVER_MEMORY_TESTING_MEMORY_PARTS_H_

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "pglist/pool.h"
#include "server/core/fake_clock.h"
#include "server/core/turn.h"
#include "server/core/turn_testing.h"
#include "server/memory/device_map.h"
#include "server/memory/lease_views.h"
#include "server/memory/quarantine.h"
#include "server/memory/recycle.h"
#include "server/memory/scrubber.h"
#include "server/memory/segments.h"
#include "server/store/committer.h"
#include "server/store/durable.h"
#include "server/store/lease_store.h"
#include "server/store/testing/store_file.h"
#include "vfio/fake_kernel.h"
#include "vfio/memory_source.h"
#include "vfio/sim_source.h"
#include "vfio/vfio_source.h"

namespace physpool::server {

class MemoryParts {
 public:
  static constexpr uint64_t kPage = 4096;

  struct Config {
    // The SimSource's segments (unused with a source of the test's).
    std::vector<vfio::SimSegmentConfig> segments = {{1 << 20, 0, 0}};
    bool store = false;  // a real LeaseStore (else every change succeeds)
    absl::Duration store_retry = absl::ZeroDuration();
    absl::Duration scrub_retry = absl::ZeroDuration();
    Quarantine::Options quarantine;
    // IOVAs of segments added at run time before a "restart".
    std::set<uint64_t> added;
  };

  // The memory components, built in the order Parts builds them.
  struct Components {
    Components(const Config& c, pglist::Pool core, vfio::MemorySource* source,
               LeaseStore* store, Coordinator* coordinator)
        : pool(std::move(core)),
          scrubber(c.scrub_retry),
          committer(store),
          durable(&committer, coordinator, c.store_retry),
          segments(&pool, source, &committer, &durable, coordinator),
          devices(&pool, source, &segments),
          recycler(&pool, source, &views, &scrubber, &devices, &durable),
          quarantine(c.quarantine, &pool, source, &views, &segments,
                     coordinator) {}
    pglist::Pool pool;
    Scrubber scrubber;
    LeaseViews views;
    Committer committer;
    DurableLog durable;
    Segments segments;
    DeviceMap devices;
    Recycler recycler;
    Quarantine quarantine;
  };

  MemoryParts() : MemoryParts(Config()) {}
  explicit MemoryParts(Config config) : config_(std::move(config)) {}
  MemoryParts(const MemoryParts&) = delete;
  MemoryParts& operator=(const MemoryParts&) = delete;
  ~MemoryParts() {
    c_.reset();  // its Committer finishes what is in flight first
    store_.reset();
    sim_.reset();
    if (!dir_.empty()) (void)std::system(("rm -rf " + dir_).c_str());
  }

  // The temporary directory, the source (a SimSource in it unless
  // `source`, started by the caller), the store, the pool and the
  // components; the source's segments restored into the pool.
  absl::Status Start(vfio::MemorySource* source = nullptr) {
    char tmpl[] = "/tmp/physpool-memory-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp");
    dir_ = tmpl;
    if (source == nullptr) {
      vfio::SimConfig sim;
      sim.dir = dir_ + "/sim";
      sim.page_size = kPage;
      sim.segments = config_.segments;
      sim_ = std::make_unique<vfio::SimSource>(sim);
      if (absl::Status s = sim_->Start(); !s.ok()) return s;
      source = sim_.get();
    }
    source_ = source;
    if (config_.store) {
      store_path_ = dir_ + "/leases.db";
      file_ = physpool::testing::StoreFile(store_path_);
      auto store = LeaseStore::Open(store_path_, "boot", source_->Layout());
      if (!store.ok()) return store.status();
      store_ = *std::move(store);
    }
    pglist::PoolOptions po;
    po.page_size = source_->page_size();
    absl::StatusOr<pglist::Pool> core = pglist::Pool::Create(po);
    if (!core.ok()) return core.status();
    c_ = std::make_unique<Components>(config_, *std::move(core), source_,
                                      store_.get(), &turns);
    absl::Status restored;
    Run([&](Turn& t) { restored = c_->segments.Restore(t, config_.added); });
    return restored;
  }

  Components& c() { return *c_; }
  vfio::MemorySource& source() { return *source_; }
  const std::string& dir() const { return dir_; }
  // The SimSource's directory (its segment and view files).
  std::string sim_dir() const { return dir_ + "/sim"; }

  // Runs `fn` in a turn inside a Committer::Scope. Whether memory came
  // back (in the turn or in a completion's turn).
  bool Run(absl::FunctionRef<void(Turn&)> fn) {
    const int before = turns.freed();
    bool freed;
    {
      Committer::Scope scope(&c_->committer);
      std::unique_ptr<Turn> t = turns.Begin();
      fn(*t);
      freed = turns.End(*t);
    }
    return freed || turns.freed() != before;
  }
  // The zeroing thread until it has no work; how many jobs ran.
  int Scrub() {
    int jobs = 0;
    for (;;) {
      std::optional<ScrubJob> job;
      Run([&](Turn& t) {
        if (c_->recycler.HasWork(t)) job = c_->recycler.Take(t);
      });
      if (!job) return jobs;
      const absl::Status zeroed = c_->recycler.Work(*job);
      Run([&](Turn& t) { c_->recycler.Apply(t, *std::move(job), zeroed); });
      ++jobs;
    }
  }
  // The maintenance thread's store probe.
  void Probe() {
    Run([&](Turn& t) { c_->durable.ProbeIfDue(t); });
  }

  // Exactly `runs` taken from the pool (page numbers are absolute).
  pglist::AllocationId Claim(std::vector<pglist::PageRun> runs,
                             bool preemptible = false) {
    pglist::AllocationId id = 0;
    Run([&](Turn&) {
      absl::StatusOr<pglist::Allocation> a = c_->pool.Claim(runs, preemptible);
      if (a.ok()) id = a->id;
    });
    return id;
  }
  // `bytes` from the pool, anywhere (0 if they do not fit).
  pglist::AllocationId Allocate(uint64_t bytes) {
    pglist::AllocationId id = 0;
    Run([&](Turn&) {
      pglist::Request r;
      r.bytes = bytes;
      absl::StatusOr<pglist::Allocation> a = c_->pool.Allocate(r);
      if (a.ok()) id = a->id;
    });
    return id;
  }
  // The first page of the first segment.
  pglist::Pfn Base() { return c_->pool.Segments().at(0).avail.start; }
  uint64_t UsedPages() const {
    return c_->pool.total_pages().value - c_->pool.free_pages().value;
  }
  bool Allocated(pglist::AllocationId a) const {
    return c_->pool.Find(a) != nullptr;
  }

  // `alloc`'s runs as a lease shows them (empty if it is not allocated).
  std::vector<LeaseRun> RunsOf(pglist::AllocationId alloc) {
    std::vector<LeaseRun> runs;
    Run([&](Turn& t) {
      if (const pglist::Allocation* a = c_->pool.Find(alloc)) {
        for (const pglist::PageRun& r : a->runs)
          runs.push_back(c_->segments.ToLeaseRun(t, r));
      }
    });
    return runs;
  }
  // Fills `runs` with `c` through the source's backing.
  bool Fill(const std::vector<LeaseRun>& runs, char c) {
    return !runs.empty() && Each(runs, [&](int fd, off_t at, uint64_t bytes) {
      const std::string data(bytes, c);
      return pwrite(fd, data.data(), bytes, at) == static_cast<ssize_t>(bytes);
    });
  }
  // Bytes of `runs` that are not `c` (~0 if unreadable).
  uint64_t CountNot(const std::vector<LeaseRun>& runs, char c) {
    uint64_t n = 0;
    const bool ok = Each(runs, [&](int fd, off_t at, uint64_t bytes) {
      std::string data(bytes, '?');
      if (pread(fd, data.data(), bytes, at) != static_cast<ssize_t>(bytes))
        return false;
      for (char b : data) n += b != c;
      return true;
    });
    return ok && !runs.empty() ? n : ~uint64_t{0};
  }

  // Makes the store refuse every `what` ("DELETE ON scrubs", "INSERT ON
  // segments", "INSERT ON meta": the probe, ...) until HealStore.
  absl::Status FailStore(const std::string& what) { return file_.Fail(what); }
  absl::Status HealStore() { return file_.Heal(); }
  // The integers of column 0 of `query` on the store file.
  std::vector<int64_t> Ints(const std::string& query) {
    return file_.Ints(query);
  }
  absl::Status Sql(const std::string& sql) { return file_.Sql(sql); }

  FakeClock clock;
  TurnTesting turns{&clock};

 private:
  // f(fd, offset, bytes) for each of `runs`, through BackingFd.
  template <typename F>
  bool Each(const std::vector<LeaseRun>& runs, F f) {
    for (const LeaseRun& r : runs) {
      absl::StatusOr<int> fd = source_->BackingFd(r.iova);
      if (!fd.ok()) return false;
      const bool ok = f(*fd, static_cast<off_t>(r.backing_offset), r.bytes);
      close(*fd);
      if (!ok) return false;
    }
    return true;
  }

  Config config_;
  std::string dir_;
  std::string store_path_;
  physpool::testing::StoreFile file_{""};
  std::unique_ptr<vfio::SimSource> sim_;
  vfio::MemorySource* source_ = nullptr;
  std::unique_ptr<LeaseStore> store_;
  std::unique_ptr<Components> c_;  // last: the first to go
};

// A VfioSource on a fake kernel with tenant devices: tenant "a" has two
// devices in groups 1 and 2 (two domains), "b" one in group 3, and one
// device is pool-wide (group 4). 4 MiB in four 1 MiB physsegs, 4 KiB pages,
// memfd backing.
struct FakeVfio {
  static constexpr char kA1[] = "0000:00:01.0";
  static constexpr char kA2[] = "0000:00:03.0";
  static constexpr char kB[] = "0000:00:04.0";
  static constexpr char kPool[] = "0000:00:05.0";
  static constexpr uint64_t kBytes = 4 << 20;

  // The source on `kernel` (the fake, or `faulty` around it).
  absl::Status Start(vfio::Kernel* kernel) {
    fake.device_groups = {{kA1, 1}, {kA2, 2}, {kB, 3}, {kPool, 4}};
    vfio::VfioConfig c;
    c.devices = {{kA1, 0, "a"}, {kA2, 0, "a"}, {kB, 0, "b"}, {kPool, 0, ""}};
    c.backing = vfio::BackingKind::kMemfd;
    c.group_busy_timeout = absl::Milliseconds(300);
    c.layout.page_size = MemoryParts::kPage;
    c.layout.max_segment_bytes = 1 << 20;
    c.layout.pool = {{0, kBytes, std::nullopt}};
    source = std::make_unique<vfio::VfioSource>(c, kernel);
    return source->Start();
  }
  absl::Status Start() { return Start(&fake); }
  // Bytes `group`'s domain maps.
  uint64_t MappedBytes(int group) const {
    uint64_t bytes = 0;
    for (const auto& [iova, m] : fake.mappings_of(group)) bytes += m.bytes;
    return bytes;
  }

  vfio::FakeKernel fake;
  vfio::FaultyKernel faulty{&fake};          // fails the call a test names
  std::unique_ptr<vfio::VfioSource> source;  // first to go
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_MEMORY_TESTING_MEMORY_PARTS_H_
