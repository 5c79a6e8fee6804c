// SPDX-License-Identifier: Apache-2.0
#include "server/memory/recycle.h"

#include <utility>

#include "absl/time/clock.h"
#include "server/core/log.h"
#include "util/status_macros.h"

namespace physpool::server {

void Recycler::ScrubAndFree(Turn& t, std::vector<pglist::AllocationId> allocs,
                            std::vector<int64_t> rows) {
  if (views_->AnyView(allocs)) {
    for (pglist::AllocationId a : allocs) scrubbing_.insert(a);
    views_->Gate(allocs, [this, allocs, rows](Turn& t) mutable {
      ScrubAndFreeNow(t, std::move(allocs), std::move(rows));
    });
    return;
  }
  ScrubAndFreeNow(t, std::move(allocs), std::move(rows));
}

void Recycler::ScrubAndFreeNow(Turn& t,
                               std::vector<pglist::AllocationId> allocs,
                               std::vector<int64_t> rows) {
  for (pglist::AllocationId a : allocs) {
    if (devices_->IsStuck(t, a)) {  // a device may still reach it: held back
      for (pglist::AllocationId b : allocs) scrubbing_.insert(b);
      return;
    }
  }
  std::vector<pglist::PageRun> runs;
  for (pglist::AllocationId a : allocs) {
    scrubbing_.insert(a);
    const pglist::Allocation* alloc = pool_->Find(a);
    runs.insert(runs.end(), alloc->runs.begin(), alloc->runs.end());
  }
  Zero(t, std::move(runs),
       [this, allocs = std::move(allocs),
        rows = std::move(rows)](Turn& t) mutable {
         FreeWhenRecorded(t, std::move(allocs), std::move(rows));
       });
}

void Recycler::FreeWhenRecorded(Turn& t,
                                std::vector<pglist::AllocationId> allocs,
                                std::vector<int64_t> rows) {
  durable_->Submit(
      t,
      [rows](LeaseStore& s) -> absl::Status {
        for (int64_t row : rows) RETURN_IF_ERROR(s.ScrubDone(row));
        return absl::OkStatus();
      },
      [this, allocs = std::move(allocs)](Turn& t) {
        for (pglist::AllocationId a : allocs) {
          scrubbing_.erase(a);
          (void)pool_->Free(a);
        }
        t.MemoryFreed();
      });
}

void Recycler::Zero(Turn& t, std::vector<pglist::PageRun> runs, TurnStep then) {
  ScrubJob job;
  job.runs = std::move(runs);
  job.then = std::move(then);
  scrubber_->Push(std::move(job));
  t.WakeScrubber();
}

bool Recycler::HasWork(Turn&) const { return scrubber_->HasWork(absl::Now()); }

std::optional<ScrubJob> Recycler::Take(Turn&) {
  return scrubber_->Next(absl::Now());
}

absl::Status Recycler::Work(const ScrubJob& job) const {
  for (const pglist::PageRun& r : job.runs) {
    const uint64_t iova = pool_->ToIova(r.start);
    const uint64_t bytes = r.pages.value * pool_->page_size();
    if (absl::Status zeroed = source_->Zero(iova, bytes); !zeroed.ok()) {
      Log(LogLevel::kError, "zeroing failed; the memory stays out of the pool",
          {F("iova", iova), F("bytes", bytes), F("error", zeroed.ToString())});
      return zeroed;
    }
  }
  return absl::OkStatus();
}

void Recycler::Apply(Turn& t, ScrubJob job, const absl::Status& zeroed) {
  if (zeroed.ok()) {
    ScrubJob done = scrubber_->Done(std::move(job));
    done.then(t);
  } else {
    scrubber_->Failed(std::move(job), absl::Now());
  }
}

}  // namespace physpool::server
