// SPDX-License-Identifier: Apache-2.0
// Memory on its way back: jobs of runs to zero before anyone else may get
// them. The manager's scrub thread takes a job (Next), zeroes it without
// the lock, and reports back: Done runs the job's continuation; Failed
// keeps the job — its pages stay out of the pool, counted — and offers it
// again after `retry` (fail closed: memory that could not be zeroed is never
// handed on).
//
// State: the jobs queued, failed (with when to retry) and in progress; the
// backlog, failed pages and error counts.
// Thread safety: not thread-safe; it takes no Turn: the Recycler (and
// Stats) call it under the pool's lock. I/O: none (the Recycler zeroes).
// REQUIRES: one job in progress at a time: Done or Failed for the job Next
// returned before the next Next.
#ifndef PHYSPOOL_SERVER_SCRUBBER_H_
#define PHYSPOOL_SERVER_SCRUBBER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "pglist/units.h"
#include "server/core/turn.h"

namespace physpool::server {

struct ScrubJob {
  uint64_t id = 0;
  std::vector<pglist::PageRun> runs;
  // Runs in a turn once the runs are zero.
  TurnStep then;
};

class Scrubber {
 public:
  explicit Scrubber(absl::Duration retry) : retry_(retry) {}

  void Push(ScrubJob job);
  // The next job to zero (queued first, then failed ones due at `now`);
  // it stays counted in the backlog until Done or Failed.
  std::optional<ScrubJob> Next(absl::Time now);
  // The job's pages are zero; returns it (its continuation to run).
  ScrubJob Done(ScrubJob job);
  // Zeroing failed: kept, offered again from `now` + retry.
  void Failed(ScrubJob job, absl::Time now);
  // When a failed job is next due, if any.
  std::optional<absl::Time> NextRetry() const;
  bool HasWork(absl::Time now) const;

  uint64_t backlog_pages() const { return backlog_pages_; }
  uint64_t failed_pages() const { return failed_pages_; }
  uint64_t errors() const { return errors_; }
  // Runs being zeroed or waiting to be, for occupancy views.
  template <typename F>
  void ForEachRun(F f) const {
    for (const ScrubJob& j : queue_)
      for (const auto& r : j.runs) f(r);
    for (const auto& [t, j] : failed_)
      for (const auto& r : j.runs) f(r);
    for (const auto& r : in_progress_) f(r);
  }

 private:
  static uint64_t Pages(const ScrubJob& j);

  const absl::Duration retry_;
  std::deque<ScrubJob> queue_;
  std::list<std::pair<absl::Time, ScrubJob>> failed_;
  std::vector<pglist::PageRun> in_progress_;
  uint64_t backlog_pages_ = 0;
  uint64_t failed_pages_ = 0;
  uint64_t errors_ = 0;
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_SCRUBBER_H_
