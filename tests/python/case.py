# SPDX-License-Identifier: Apache-2.0
"""What the package's tests share: the driver's environment and a TestCase
with a fresh daemon per test (python_package_test.sh sets the variables)."""

import os
import threading
import time
import unittest
from typing import Any, Callable, Dict, List, Optional

import physpool
from pp_daemon import TOKENS, Daemon

PHYSPOOLD = os.environ["PHYSPOOL_TEST_PHYSPOOLD"]
PHYSPOOLCTL = os.environ["PHYSPOOL_TEST_PHYSPOOLCTL"]
ABI_PROBE = os.environ["PHYSPOOL_TEST_ABI_PROBE"]
SOURCE = os.environ["PHYSPOOL_TEST_SOURCE"]
WORK = os.environ["PHYSPOOL_TEST_WORK"]
MIB = 1 << 20


class DaemonCase(unittest.TestCase):
    """A test with its own physpoold (self.d), stopped cleanly after it."""

    def setUp(self) -> None:
        self.d = Daemon(PHYSPOOLD, PHYSPOOLCTL)
        self.addCleanup(self._stop_daemon)

    def _stop_daemon(self) -> None:
        log = self.d.read_log()
        code = self.d.close()
        self.assertEqual(code, 0, "physpoold did not exit cleanly:\n" + log)

    def connect(self, tenant: str = "alice", **kw: Any) -> physpool.Client:
        """A client of `tenant`, closed after the test (before the daemon)."""
        client = physpool.connect(self.d.endpoint, token=TOKENS[tenant], **kw)
        self.addCleanup(client.close)
        return client

    def wait_for(self, predicate: Callable[[], Any], seconds: float = 15,
                 what: str = "the condition") -> None:
        """Polls `predicate` until true, failing after `seconds`."""
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                self.fail(f"{what}: not within {seconds} s")
            time.sleep(0.02)

    def settle(self) -> None:
        """Waits until released memory is zeroed and free again (the
        daemon scrubs it in the background)."""
        self.wait_for(lambda: all(int(s.get("scrubbing_bytes", 0)) == 0
                                  for s in self.d.segments()), what="scrubbing done")

    def lease(self, lease_id: str, tenant: str = "alice") -> Optional[Dict[str, Any]]:
        """The daemon's record of one of the tenant's leases, or None."""
        for lease in self.d.leases(tenant):
            if lease["id"] == lease_id:
                return lease
        return None


class Recorder:
    """A callback that records what it is given and on which thread."""

    def __init__(self) -> None:
        self.events: List[Any] = []
        self.threads: List[threading.Thread] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)
        self.threads.append(threading.current_thread())
