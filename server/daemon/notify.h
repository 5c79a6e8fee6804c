// SPDX-License-Identifier: Apache-2.0
// The systemd readiness protocol (sd_notify(3), through libsystemd): tells
// a service manager that physpoold is ready, that it is stopping, and pings
// its watchdog. Without NOTIFY_SOCKET in the environment (not started by
// systemd with Type=notify, nor by a test that owns such a socket) every
// call does nothing.
//
// State: whether a manager listens and its watchdog interval (constant
// after construction), the watchdog thread.
// Thread safety: thread-safe.
// I/O: a datagram to NOTIFY_SOCKET per message (sd_notify); the watchdog
// thread calls `alive` every half interval.
// REQUIRES: what `alive` uses outlives the notifier (its thread calls it
// until the destructor joins it).
#ifndef PHYSPOOL_SERVER_NOTIFY_H_
#define PHYSPOOL_SERVER_NOTIFY_H_

#include <functional>
#include <thread>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace physpool::server {

class ServiceNotifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC / WATCHDOG_PID once.
  ServiceNotifier();
  // Stops the watchdog thread, if one runs.
  ~ServiceNotifier();
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  // True when a service manager listens (NOTIFY_SOCKET is set).
  bool enabled() const { return enabled_; }

  // "READY=1" with a STATUS= line. REQUIRES: every listener is up and health
  // is SERVING: the manager starts dependent units on it.
  void Ready(absl::string_view status);

  // "STOPPING=1" with a STATUS= line: the start of shutdown.
  void Stopping(absl::string_view status);

  // The interval the manager asked for (WatchdogSec=), or zero.
  absl::Duration watchdog_interval() const { return watchdog_; }

  // If the manager asked for a watchdog, starts a thread that, every half
  // interval, calls `alive` and sends "WATCHDOG=1" if it returned true. A
  // daemon that hangs (alive() blocks) or is unhealthy misses its pings and
  // the manager restarts it. Thread-safe; at most one watchdog thread.
  void StartWatchdog(std::function<bool()> alive);

 private:
  void Send(const std::string& state);

  // Constant after construction.
  bool enabled_ = false;
  absl::Duration watchdog_ = absl::ZeroDuration();

  absl::Notification stop_;
  absl::Mutex mu_;
  std::thread watchdog_thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace physpool::server

#endif  // PHYSPOOL_SERVER_NOTIFY_H_
