# SPDX-License-Identifier: Apache-2.0
"""Boundary: the fd socket (docs/security.md, "The fd socket").

Promise: no client keeps the other processes of its uid out for longer than
listen.fd_socket_access.answer_deadline_ms: a connection that does not read
its answer by then is closed. What it was sent may still wait in its
receive queue, so that view stays held (quarantined) while the process
lives.
"""
import os
import signal
import time
import unittest

import harness
from harness import MIB, TOKENS, Daemon, tool, wait_until


class FdSocketTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.d.config["listen"]["fd_socket_access"] = {
            "max_connections_per_uid": 4, "answer_deadline_ms": 500}
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.lease = self.d.allocate(TOKENS["alice"], MIB)

    def park(self, n):
        ready = os.path.join(self.d.dir, "parked")
        p = tool(None, "park", self.d.fd_socket, self.lease.id, TOKENS["alice"], n, ready,
                 background=True)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait()))
        wait_until(lambda: os.path.exists(ready), what="the parker")
        return p

    def test_parked_connections_lock_their_uid_out_only_until_the_deadline(self):
        self.park(4)
        time.sleep(0.1)
        line, fds = self.d.backing(self.lease.id, TOKENS["alice"])
        self.assertTrue(line.startswith("error RESOURCE_EXHAUSTED"), line)
        # Past the deadline the parked connections are closed: served again.
        def served():
            line, fds = self.d.backing(self.lease.id, TOKENS["alice"])
            for fd in fds:
                os.close(fd)
            return line.startswith("ok")
        wait_until(served, timeout=5, what="the uid served again")
        self.assertIn("answer was not read in time", self.d.log())

    def test_a_view_never_read_stays_held_while_its_peer_lives(self):
        parker = self.park(2)
        wait_until(lambda: "answer was not read in time" in self.d.log(), timeout=5,
                   what="the deadline")
        self.d.release(TOKENS["alice"], self.lease.id)
        time.sleep(0.5)  # a few scans
        q = harness.quarantine_of(self.d, self.lease.id)
        self.assertIsNotNone(q, "the view in the parker's queue was let go")
        # The parker goes: so does what waited in its queue.
        parker.send_signal(signal.SIGTERM)
        parker.wait()
        wait_until(lambda: harness.quarantine_of(self.d, self.lease.id) is None,
                   timeout=10, what="the quarantine to end")


if __name__ == "__main__":
    harness.main()
