// SPDX-License-Identifier: Apache-2.0
// Test-only: a real Parts (lease/parts.h) for the lease flows' unit tests,
// built as PoolManager builds it — over a TurnTesting (its Coordinator and
// TurnHost) and a FakeClock, a SimSource in a temporary directory, the
// pglist::Pool of its segments, a TenantRegistry, AccessTokens and, if
// asked, a real SQLite LeaseStore (with triggers to make its writes fail).
//
// Every step runs as the coordinator runs it: in a turn, inside a
// Committer::Scope, so that the store writes a turn submits are applied on
// the test's thread when the step ends and their completions (which take
// turns of their own through the TurnTesting) have run before it returns.
// What the coordinator's threads do (threads.cc) is spelled out: Maintain
// (expiries, wait deadlines, reclaims past their grace period, store
// probes) and Scrub (take a zeroing job, zero with no turn, apply). Unlike
// PoolManager, a turn that frees memory does not retry the waiting
// requests by itself: Run says whether memory came back and the test calls
// Retry, so that the retry is seen.
#ifndef PHYSPOOL_SERVER_LEASE_TESTING_PARTS_FIXTURE_H_
#define PHYSPOOL_SERVER_LEASE_TESTING_PARTS_FIXTURE_H_

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
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
#include "server/core/options.h"
#include "server/core/turn.h"
#include "server/core/turn_testing.h"
#include "server/core/types.h"
#include "server/lease/access_tokens.h"
#include "server/lease/parts.h"
#include "server/lease/tenants.h"
#include "server/store/committer.h"
#include "server/store/lease_store.h"
#include "server/store/testing/store_file.h"
#include "vfio/sim_source.h"

namespace physpool::server {

// What a request (or a Release, Renew, Revoke) was answered, and how often.
template <typename T>
struct Answer {
  int calls = 0;
  absl::StatusOr<T> value = absl::UnknownError("not answered");
  bool answered() const { return calls > 0; }
};
using Reply = Answer<LeaseInfo>;

// An AllocDone (or LeaseDone) that records its answer in `r`.
inline AllocDone Catch(std::shared_ptr<Reply> r) {
  return [r](absl::StatusOr<LeaseInfo> v) {
    ++r->calls;
    r->value = std::move(v);
  };
}

class LeaseParts {
 public:
  static constexpr uint64_t kPage = 4096;
  static constexpr uint64_t kSegmentBytes = 1 << 20;  // 256 pages

  struct Config {
    std::vector<vfio::SimSegmentConfig> segments = {{kSegmentBytes, 0, 0}};
    ManagerOptions options;
    // Default: tenants "a" and "b", without limits.
    std::vector<Tenant> tenants;
    // A real LeaseStore in the temporary directory (else none: every
    // change succeeds).
    bool store = false;
  };

  explicit LeaseParts(Config config) : config_(std::move(config)) {
    if (config_.tenants.empty()) {
      Tenant a, b;
      a.name = "a";
      b.name = "b";
      config_.tenants = {a, b};
    }
  }
  LeaseParts(const LeaseParts&) = delete;
  LeaseParts& operator=(const LeaseParts&) = delete;
  ~LeaseParts() {
    parts_.reset();  // its Committer finishes what is in flight first
    store_.reset();
    source_.reset();
    if (!dir_.empty()) (void)std::system(("rm -rf " + dir_).c_str());
  }

  // The source, the store, the pool from the source's segments, the Parts
  // over them (as PoolManager's constructor and Start do).
  absl::Status Start() {
    char tmpl[] = "/tmp/physpool-lease-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp");
    dir_ = tmpl;
    vfio::SimConfig sim;
    sim.dir = dir_ + "/sim";
    sim.page_size = kPage;
    sim.segments = config_.segments;
    source_ = std::make_unique<vfio::SimSource>(sim);
    if (absl::Status s = source_->Start(); !s.ok()) return s;
    tenants_ = std::make_unique<TenantRegistry>(config_.tenants);
    options_ = config_.options;
    if (config_.store) {
      store_path_ = dir_ + "/leases.db";
      file_ = physpool::testing::StoreFile(store_path_);
      auto store = LeaseStore::Open(store_path_, "boot", source_->Layout());
      if (!store.ok()) return store.status();
      store_ = *std::move(store);
    }
    absl::StatusOr<pglist::Pool> core =
        pglist::Pool::Create(PoolOptionsFor(options_, kPage));
    if (!core.ok()) return core.status();
    parts_ =
        std::make_unique<Parts>(options_, *std::move(core), source_.get(),
                                tenants_.get(), store_.get(), &access_, &turns);
    absl::Status restored;
    Run([&](Turn& t) { restored = parts_->segments.Restore(t, {}); });
    return restored;
  }

  Parts& parts() { return *parts_; }
  const ManagerOptions& options() const { return options_; }
  TenantRegistry& tenants() { return *tenants_; }
  Tenant tenant(const std::string& name) const {
    return *tenants_->ByName(name);
  }

  // Runs `fn` in a turn inside a Committer::Scope (as PoolManager's RPC
  // entries do): when it returns, the turn's answers have run and so have
  // the store writes it submitted and their completions. Whether memory
  // came back (in the turn or in a completion's turn).
  bool Run(absl::FunctionRef<void(Turn&)> fn) {
    const int before = turns.freed();
    bool freed;
    {
      Committer::Scope scope(&parts_->committer);
      std::unique_ptr<Turn> t = turns.Begin();
      fn(*t);
      freed = turns.End(*t);
    }
    return freed || turns.freed() != before;
  }
  // What the coordinator does at the end of a turn that freed memory.
  void Retry() {
    Run([&](Turn& t) { parts_->waiting.Retry(t); });
  }
  // One pass of the maintenance thread (threads.cc).
  void Maintain() {
    Run([&](Turn& t) {
      if (t.accepting()) {
        parts_->ender.Expire(t);
        parts_->waiting.Expire(t);
      }
      parts_->reclaim.Ready(t);
      parts_->durable.ProbeIfDue(t);
    });
  }
  // The zeroing thread until it has no work: take a job (in a turn), zero
  // it (no turn), apply (in a new turn). How many jobs ran.
  int Scrub() {
    int jobs = 0;
    for (;;) {
      std::optional<ScrubJob> job;
      Run([&](Turn& t) {
        if (parts_->recycler.HasWork(t)) job = parts_->recycler.Take(t);
      });
      if (!job) return jobs;
      const absl::Status zeroed = parts_->recycler.Work(*job);
      Run([&](Turn& t) { parts_->recycler.Apply(t, *std::move(job), zeroed); });
      ++jobs;
    }
  }

  // An Allocate request for `bytes`.
  static AllocateParams Params(uint64_t bytes) {
    AllocateParams p;
    p.req.bytes = bytes;
    return p;
  }
  // Admits `p` of `tenant` with a deadline `timeout` from now (as
  // PoolManager::Allocate). Its handle.
  uint64_t Admit(const std::string& tenant, AllocateParams p,
                 std::shared_ptr<Reply> r,
                 absl::Duration timeout = absl::Seconds(60)) {
    const Tenant who = this->tenant(tenant);
    p.req.privileged = who.Has(kRolePrivileged);
    p.req.run_cap = options_.max_runs_per_lease;
    const absl::Time deadline = clock.Now() + timeout;
    uint64_t handle = 0;
    Run([&](Turn& t) {
      handle =
          parts_->admission.Admit(t, who, std::move(p), deadline, Catch(r));
    });
    return handle;
  }
  // The same, answered at once (UNKNOWN if it was not).
  absl::StatusOr<LeaseInfo> Allocate(const std::string& tenant,
                                     AllocateParams p) {
    auto r = std::make_shared<Reply>();
    Admit(tenant, std::move(p), r);
    return r->value;
  }
  absl::StatusOr<LeaseInfo> Allocate(const std::string& tenant,
                                     uint64_t bytes) {
    return Allocate(tenant, Params(bytes));
  }

  // The RPCs that end or renew a lease, answered when the step ends
  // (UNKNOWN if they were not).
  absl::StatusOr<bool> Release(const std::string& tenant,
                               const std::string& id) {
    Answer<bool> a;
    Run([&](Turn& t) {
      parts_->ender.Release(t, this->tenant(tenant), id,
                            [&a](absl::StatusOr<bool> v) {
                              ++a.calls;
                              a.value = std::move(v);
                            });
    });
    return a.value;
  }
  absl::StatusOr<LeaseInfo> Revoke(const std::string& id,
                                   const std::string& reason = "") {
    auto r = std::make_shared<Reply>();
    Run([&](Turn& t) { parts_->ender.Revoke(t, id, reason, Catch(r)); });
    return r->value;
  }
  absl::StatusOr<LeaseInfo> Renew(const std::string& tenant,
                                  const std::string& id, absl::Duration ttl) {
    auto r = std::make_shared<Reply>();
    Run([&](Turn& t) {
      parts_->ender.Renew(t, this->tenant(tenant), id, ttl, Catch(r));
    });
    return r->value;
  }

  // Collects the lease events of `tenant` in events[tenant].
  void Watch(const std::string& tenant) {
    Run([&](Turn& t) {
      const uint64_t id = parts_->admission.NewHandle(t);
      (void)parts_->events.Subscribe(
          t, id, tenant,
          [this, tenant](const LeaseEventInfo& e) {
            events[tenant].push_back(e);
          },
          nullptr);
    });
  }
  std::vector<LeaseEventInfo::Kind> Kinds(const std::string& tenant) {
    std::vector<LeaseEventInfo::Kind> out;
    for (const LeaseEventInfo& e : events[tenant]) out.push_back(e.kind);
    return out;
  }

  // Pages of the pool in use (leases, memory being zeroed, held windows).
  uint64_t UsedPages() const {
    return parts_->pool.total_pages().value - parts_->pool.free_pages().value;
  }
  uint64_t FreePages() const { return parts_->pool.free_pages().value; }

  // The first byte of a lease's memory, through its segment's backing file.
  char ReadFirstByte(const LeaseInfo& l) const {
    char c = 0;
    const int fd = open(l.runs.at(0).backing_path.c_str(), O_RDONLY);
    if (fd >= 0) {
      (void)pread(fd, &c, 1, static_cast<off_t>(l.runs[0].backing_offset));
      close(fd);
    }
    return c;
  }
  bool WriteFirstByte(const LeaseInfo& l, char c) const {
    const int fd = open(l.runs.at(0).backing_path.c_str(), O_RDWR);
    if (fd < 0) return false;
    const bool ok =
        pwrite(fd, &c, 1, static_cast<off_t>(l.runs[0].backing_offset)) == 1;
    close(fd);
    return ok;
  }

  // Makes the store refuse every `what` ("INSERT ON leases", "DELETE ON
  // leases", "UPDATE ON leases", "DELETE ON scrubs", ...) until Heal, with
  // a trigger added through a connection of its own. REQUIRES: a store.
  absl::Status FailStore(const std::string& what) { return file_.Fail(what); }
  absl::Status HealStore() { return file_.Heal(); }

  FakeClock clock;
  TurnTesting turns{&clock};
  std::map<std::string, std::vector<LeaseEventInfo>> events;

 private:
  Config config_;
  ManagerOptions options_;
  std::string dir_;
  std::string store_path_;
  physpool::testing::StoreFile file_{""};
  std::unique_ptr<vfio::SimSource> source_;
  std::unique_ptr<TenantRegistry> tenants_;
  AccessTokens access_;
  std::unique_ptr<LeaseStore> store_;
  std::unique_ptr<Parts> parts_;  // last: the first to go
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_LEASE_TESTING_PARTS_FIXTURE_H_
