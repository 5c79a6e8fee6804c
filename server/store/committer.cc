// SPDX-License-Identifier: Apache-2.0
#include "server/store/committer.h"

#include <limits>
#include <utility>
#include <vector>

namespace physpool::server {
namespace {

// The committer whose Scope is innermost on this thread, if any.
thread_local Committer* tl_scope = nullptr;

// Transactions a submitting thread applies before it leaves the rest to the
// committer's thread: its own, and a few of the callers that queued behind
// it, so that an RPC thread is not kept from its own answer under load.
constexpr int kLeaderRounds = 4;

}  // namespace

Committer::Committer(LeaseStore* store, size_t max_batch)
    : store_(store), max_batch_(max_batch) {
  thread_ = std::thread([this] { Loop(); });
}

Committer::~Committer() { Stop(); }

Committer::Scope::Scope(Committer* c) : committer_(c), outer_(tl_scope) {
  tl_scope = c;
}

Committer::Scope::~Scope() {
  tl_scope = outer_;
  if (outer_ != committer_) committer_->Drive(kLeaderRounds);
}

void Committer::Submit(Change change, Done done, Prepare prepare) {
  {
    absl::MutexLock l(&mu_);
    if (!stopping_) {
      const bool deferred = tl_scope == this;
      queue_.push_back(
          {std::move(change), std::move(done), std::move(prepare), deferred});
      // A busy thread takes it along; a Scope's end applies it.
      if (!deferred) {
        ++undeferred_;
        if (!busy_) cv_.Signal();
      }
      return;
    }
  }
  done(absl::UnavailableError("the lease store is closed: shutting down"));
}

void Committer::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    cv_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

Committer::Stats Committer::stats() const {
  absl::MutexLock l(&mu_);
  return stats_;
}

std::vector<Committer::Item> Committer::TakeBatch() {
  std::vector<Item> batch;
  while (!queue_.empty() && batch.size() < max_batch_) {
    undeferred_ -= !queue_.front().deferred;
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  return batch;
}

void Committer::Drive(int rounds) {
  absl::MutexLock l(&mu_);
  if (busy_ || queue_.empty()) return;  // the busy thread takes it
  busy_ = true;
  Lead(rounds, /*led=*/true);
}

void Committer::Lead(int rounds, bool led) {
  for (int round = 0; round < rounds && !queue_.empty(); ++round) {
    std::vector<Item> batch = TakeBatch();
    mu_.Unlock();
    Apply(std::move(batch), led);
    mu_.Lock();
  }
  busy_ = false;
  // What is left (a Scope that found this thread busy left its changes to
  // it) goes to the committer's thread; a stopping one is told it is free.
  if (!queue_.empty()) handoff_ = true;
  if (!queue_.empty() || stopping_) cv_.Signal();
}

void Committer::Loop() {
  absl::MutexLock l(&mu_);
  for (;;) {
    // Its own work: changes submitted outside a Scope, a leader's
    // hand-off, or (stopping) whatever is left.
    while (queue_.empty() || busy_ ||
           (undeferred_ == 0 && !handoff_ && !stopping_)) {
      if (stopping_ && queue_.empty() && !busy_) return;  // all applied
      cv_.Wait(&mu_);
    }
    busy_ = true;
    handoff_ = false;
    Lead(std::numeric_limits<int>::max(), /*led=*/false);
  }
}

void Committer::Apply(std::vector<Item> batch, bool led) {
  for (Item& item : batch) {
    if (item.prepare) item.prepare();
  }
  std::vector<absl::Status> results(batch.size());
  if (store_ != nullptr) {
    // A change alone in its transaction needs no savepoint: its failure
    // rolls the transaction back and undoes nothing else.
    const bool alone = batch.size() == 1;
    bool rolled_back = false;
    absl::Status begun = store_->Begin();
    for (size_t i = 0; i < batch.size() && begun.ok(); ++i) {
      absl::Status s = alone ? absl::OkStatus() : store_->Savepoint();
      if (s.ok()) s = batch[i].change(*store_);
      if (s.ok() && !alone) s = store_->Release();
      if (s.ok()) {
        results[i] = s;
        continue;
      }
      if (!store_->InTransaction()) {
        // SQLite rolled the whole transaction back (disk full, I/O
        // error): the batch's earlier changes are gone too.
        begun = s;
        break;
      }
      if (alone) {
        store_->Rollback();
        rolled_back = true;
      } else {
        store_->RollbackTo();
      }
      results[i] = s;
    }
    absl::Status committed = !begun.ok()   ? begun
                             : rolled_back ? absl::OkStatus()
                                           : store_->Commit();
    if (!begun.ok()) store_->Rollback();
    if (!committed.ok()) {
      for (absl::Status& r : results) r = committed;
    }
  }
  uint64_t errors = 0;
  for (const absl::Status& r : results) errors += !r.ok();
  {
    absl::MutexLock l(&mu_);
    ++stats_.transactions;
    stats_.led += led;
    stats_.changes += batch.size();
    stats_.errors += errors;
  }
  for (size_t i = 0; i < batch.size(); ++i) batch[i].done(results[i]);
}

}  // namespace physpool::server
