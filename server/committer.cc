#include "server/committer.h"

#include <utility>
#include <vector>

namespace physpool::server {

Committer::Committer(LeaseStore* store, size_t max_batch)
    : store_(store), max_batch_(max_batch) {
  thread_ = std::thread([this] { Loop(); });
}

Committer::~Committer() { Stop(); }

void Committer::Submit(Change change, Done done) {
  {
    absl::MutexLock l(&mu_);
    if (!stopping_) {
      queue_.push_back({std::move(change), std::move(done)});
      cv_.Signal();
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

void Committer::Loop() {
  for (;;) {
    std::vector<Item> batch;
    {
      absl::MutexLock l(&mu_);
      while (queue_.empty() && !stopping_) cv_.Wait(&mu_);
      if (queue_.empty()) return;  // stopping, and all applied
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::vector<absl::Status> results(batch.size());
    if (store_ != nullptr) {
      absl::Status begun = store_->Begin();
      for (size_t i = 0; i < batch.size() && begun.ok(); ++i) {
        absl::Status s = store_->Savepoint();
        if (s.ok()) s = batch[i].change(*store_);
        if (s.ok()) s = store_->Release();
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
        store_->RollbackTo();
        results[i] = s;
      }
      absl::Status committed = begun.ok() ? store_->Commit() : begun;
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
      stats_.changes += batch.size();
      stats_.errors += errors;
    }
    for (size_t i = 0; i < batch.size(); ++i) batch[i].done(results[i]);
  }
}

}  // namespace physpool::server
