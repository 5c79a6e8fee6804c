// SPDX-License-Identifier: Apache-2.0
#include "server/memory/scrubber.h"

#include <algorithm>
#include <utility>

namespace physpool::server {

uint64_t Scrubber::Pages(const ScrubJob& j) {
  uint64_t n = 0;
  for (const auto& r : j.runs) n += r.pages.value;
  return n;
}

void Scrubber::Push(ScrubJob job) {
  backlog_pages_ += Pages(job);
  queue_.push_back(std::move(job));
}

std::optional<ScrubJob> Scrubber::Next(absl::Time now) {
  std::optional<ScrubJob> job;
  if (!queue_.empty()) {
    job = std::move(queue_.front());
    queue_.pop_front();
  } else {
    for (auto it = failed_.begin(); it != failed_.end(); ++it) {
      if (it->first > now) continue;
      job = std::move(it->second);
      failed_pages_ -= Pages(*job);
      failed_.erase(it);
      break;
    }
  }
  if (job) in_progress_ = job->runs;
  return job;
}

ScrubJob Scrubber::Done(ScrubJob job) {
  backlog_pages_ -= Pages(job);
  in_progress_.clear();
  return job;
}

void Scrubber::Failed(ScrubJob job, absl::Time now) {
  ++errors_;
  failed_pages_ += Pages(job);
  in_progress_.clear();
  failed_.emplace_back(now + retry_, std::move(job));
}

std::optional<absl::Time> Scrubber::NextRetry() const {
  std::optional<absl::Time> next;
  for (const auto& [t, j] : failed_) {
    if (!next || t < *next) next = t;
  }
  return next;
}

bool Scrubber::HasWork(absl::Time now) const {
  if (!queue_.empty()) return true;
  return std::any_of(failed_.begin(), failed_.end(),
                     [now](const auto& f) { return f.first <= now; });
}

}  // namespace physpool::server
