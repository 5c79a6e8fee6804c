// SPDX-License-Identifier: Apache-2.0
#include "server/daemon/notify.h"

#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/log.h"

namespace physpool::server {

ServiceNotifier::ServiceNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  uint64_t usec = 0;
  // > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID (if set) is us.
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = absl::Microseconds(static_cast<int64_t>(usec));
  }
}

ServiceNotifier::~ServiceNotifier() {
  stop_.Notify();
  absl::MutexLock l(&mu_);
  if (watchdog_thread_.joinable()) watchdog_thread_.join();
}

void ServiceNotifier::Send(const std::string& state) {
  if (!enabled_) return;
  const int rc = sd_notify(0, state.c_str());
  if (rc < 0) {
    Log(LogLevel::kWarn, "sd_notify failed",
        {F("state", state.substr(0, state.find('\n'))),
         F("error", std::strerror(-rc))});
  }
}

void ServiceNotifier::Ready(absl::string_view status) {
  Send(absl::StrCat("READY=1\nSTATUS=", status));
  if (enabled_) Log(LogLevel::kDebug, "notified service manager: READY=1");
}

void ServiceNotifier::Stopping(absl::string_view status) {
  Send(absl::StrCat("STOPPING=1\nSTATUS=", status));
}

void ServiceNotifier::StartWatchdog(std::function<bool()> alive) {
  if (watchdog_ <= absl::ZeroDuration()) return;
  absl::MutexLock l(&mu_);
  if (watchdog_thread_.joinable()) return;
  Log(LogLevel::kInfo, "systemd watchdog",
      {F("interval_ms", absl::ToInt64Milliseconds(watchdog_))});
  watchdog_thread_ = std::thread([this, alive = std::move(alive)] {
    const absl::Duration period = watchdog_ / 2;
    do {
      if (alive()) Send("WATCHDOG=1");
    } while (!stop_.WaitForNotificationWithTimeout(period));
  });
}

}  // namespace physpool::server
