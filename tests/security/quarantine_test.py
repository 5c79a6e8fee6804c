# SPDX-License-Identifier: Apache-2.0
"""Boundary: the quarantine of ended leases (docs/security.md, "The
quarantine").

Promise: memory of an ended lease returns to the pool only when the daemon
knows nothing maps it or holds its view. Every process it cannot inspect
counts as a holder: a forked worker that keeps a mapping after its parent
exited, before and after a daemon restart. With CAP_SYS_PTRACE and
CAP_DAC_READ_SEARCH (or as root) the daemon names the holder and the memory
comes back once it lets go; without them the memory stays quarantined and
the daemon says why (log, metric). A daemon that cannot see every process
(another pid namespace) holds every such view.
"""
import os
import signal
import time
import unittest

import grpc

import harness
from harness import DAEMON_UID, MIB, TENANT_UID, TOKENS, Daemon, code_of, tool, wait_until

# What reading every process's /proc/<pid>/fd and maps takes without root:
# the fd directory is its owner's (0500), the links and maps need ptrace.
PTRACE_CAPS = ["sys_ptrace", "dac_read_search"]


class QuarantineTest(unittest.TestCase):
    def daemon(self, caps=(), wrapper=()):
        d = Daemon(uid=DAEMON_UID, caps=caps, wrapper=wrapper)
        # Tenants of other uids reach the sockets; tokens say who they are.
        d.config["listen"]["unix_mode"] = "0666"
        self.addCleanup(d.cleanup)
        self.addCleanup(harness.kill_uid, TENANT_UID)
        return d.start()

    def hold(self, d, lease):
        """A process of TENANT_UID maps the lease's view, forks a worker
        that keeps the mapping (no descriptor), and exits: the worker."""
        ready = os.path.join(harness.private_dir(d.dir, "tenant", TENANT_UID),
                             f"worker-{lease.id}")
        p = tool(TENANT_UID, "hold-view", d.fd_socket, lease.id, TOKENS["alice"], ready,
                 background=True)
        self.assertEqual(p.wait(timeout=30), 0)
        with open(ready) as f:
            return int(f.read())

    @staticmethod
    def kill(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def assert_held(self, d, lease):
        """The ended lease's memory stays out of the pool: quarantined, and
        bob cannot be granted its IOVA."""
        time.sleep(0.6)  # several scans (scan_interval_ms: 100)
        q = harness.quarantine_of(d, lease.id)
        self.assertIsNotNone(q, "the quarantine ended while the worker maps the view")
        run = lease.runs[0]
        code = code_of(lambda: d.allocate(TOKENS["bob"], run.length, low=run.iova,
                                          high=run.iova + run.length, max_segments=1))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        return q

    def assert_back(self, d, lease):
        wait_until(lambda: harness.quarantine_of(d, lease.id) is None, timeout=10,
                   what="the quarantine to end")
        run = lease.runs[0]
        got = d.allocate(TOKENS["bob"], run.length, low=run.iova, high=run.iova + run.length,
                         max_segments=1)
        self.assertEqual(got.runs[0].iova, run.iova)

    def test_a_forked_worker_of_another_uid_holds_the_view(self):
        d = self.daemon()
        lease = d.allocate(TOKENS["alice"], MIB, max_segments=1)
        worker = self.hold(d, lease)
        d.release(TOKENS["alice"], lease.id)
        q = self.assert_held(d, lease)
        self.assertTrue(any(h.uninspected for h in q.holders) or q.more_holders)
        # Without CAP_SYS_PTRACE it cannot know even once the worker is
        # gone (every process of another uid may hold it): it says so.
        self.kill(worker)
        self.assert_held(d, lease)
        self.assertGreater(d.metric("physpool_quarantined_unverified_bytes"), 0)
        self.assertGreater(d.metric("physpool_quarantine_uninspected_processes"), 0)
        wait_until(lambda: "ended leases stay quarantined" in d.log(),
                   what="the log line saying why")

    def test_with_ptrace_caps_the_holder_is_named_and_let_go(self):
        d = self.daemon(caps=PTRACE_CAPS)
        lease = d.allocate(TOKENS["alice"], MIB, max_segments=1)
        worker = self.hold(d, lease)
        d.release(TOKENS["alice"], lease.id)
        q = self.assert_held(d, lease)
        self.assertIn(worker, [h.pid for h in q.holders])
        self.assertEqual(d.metric("physpool_quarantine_uninspected_processes"), 0)
        self.kill(worker)
        self.assert_back(d, lease)

    def test_holders_still_hold_after_a_restart(self):
        d = self.daemon(caps=PTRACE_CAPS)
        l1 = d.allocate(TOKENS["alice"], MIB, max_segments=1)
        l2 = d.allocate(TOKENS["alice"], MIB, max_segments=1)
        w1, w2 = self.hold(d, l1), self.hold(d, l2)
        d.release(TOKENS["alice"], l1.id)
        self.assert_held(d, l1)
        d.kill()
        d.start()
        self.assert_held(d, l1)
        d.release(TOKENS["alice"], l2.id)
        self.assert_held(d, l2)
        self.assert_held(d, l1)
        self.kill(w1)
        self.kill(w2)
        self.assert_back(d, l1)
        self.assert_back(d, l2)

    def test_holders_of_another_uid_still_hold_after_a_restart(self):
        d = self.daemon()
        l1 = d.allocate(TOKENS["alice"], MIB, max_segments=1)
        l2 = d.allocate(TOKENS["alice"], MIB, max_segments=1)
        self.hold(d, l1)
        self.hold(d, l2)
        d.release(TOKENS["alice"], l1.id)
        d.kill()
        d.start()
        d.release(TOKENS["alice"], l2.id)
        self.assert_held(d, l1)
        self.assert_held(d, l2)

    def test_a_daemon_that_cannot_see_every_process_holds_every_view(self):
        d = self.daemon(wrapper=["unshare", "--pid", "--fork", "--mount-proc",
                                 "--kill-child"])
        self.assertEqual(d.metric("physpool_quarantine_blind"), 1)
        self.assertIn("cannot see every process", d.log())


if __name__ == "__main__":
    harness.main()
