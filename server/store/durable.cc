// SPDX-License-Identifier: Apache-2.0
#include "server/store/durable.h"

#include <utility>

#include "absl/time/clock.h"
#include "server/core/log.h"

namespace physpool::server {

void DurableLog::Submit(Turn& t, Committer::Change change, TurnStep ok) {
  Write(t, std::make_shared<Committer::Change>(std::move(change)),
        std::move(ok));
}

void DurableLog::Write(Turn&, std::shared_ptr<Committer::Change> change,
                       TurnStep ok) {
  committer_->Submit(
      [change](LeaseStore& s) { return (*change)(s); },
      [this, change, ok = std::move(ok)](absl::Status s) {
        coordinator_->Locked([&](Turn& t) {
          if (s.ok()) {
            ok(t);
          } else if (!stopping_) {
            // Cannot be undone: hold its pages, retry until the store
            // takes it, and say the daemon is not serving meanwhile.
            Failed(t, s);
            ++unrecorded_;
            held_.push_back({change, ok});
            Log(LogLevel::kError, "store write failed; retrying",
                {F("error", s.ToString()), F("pending", held_.size())});
          }
        });
      });
}

void DurableLog::Failed(Turn& t, const absl::Status& s) {
  ++errors_;
  if (writable_) {
    Log(LogLevel::kError, "lease store not writable: NOT_SERVING",
        {F("error", s.ToString())});
  }
  writable_ = false;
  next_probe_ = absl::Now() + retry_;
  t.WakeMaintenance();
}

void DurableLog::ProbeIfDue(Turn&) {
  if (writable_ || probing_ || absl::Now() < next_probe_) return;
  probing_ = true;
  committer_->Submit([](LeaseStore& s) { return s.Probe(); },
                     [this](absl::Status s) {
                       coordinator_->Locked([&](Turn& t) {
                         probing_ = false;
                         if (!s.ok()) {
                           ++errors_;
                           next_probe_ = absl::Now() + retry_;
                         } else {
                           std::vector<Held> again = std::move(held_);
                           held_.clear();
                           unrecorded_ -= static_cast<uint32_t>(again.size());
                           for (Held& h : again) Write(t, h.change, h.ok);
                           if (unrecorded_ == 0 && held_.empty()) {
                             writable_ = true;
                             Log(LogLevel::kInfo,
                                 "lease store writable again: SERVING");
                           }
                         }
                         t.WakeMaintenance();
                       });
                     });
}

}  // namespace physpool::server
