# SPDX-License-Identifier: Apache-2.0
"""Boundary: a second daemon (docs/security.md, "A second daemon").

Promise: exactly one daemon owns a store and its memory. A second physpoold
with the same store and pool (its own sockets and ports) exits at once,
naming the holder's pid, before it opens, restores or zeroes anything; two
started at the same moment cannot both serve.
"""
import copy
import os
import time
import unittest

import harness
from harness import MIB, TOKENS, Daemon


def twin(d):
    """A daemon with d's store and memory but sockets of its own."""
    other = Daemon(copy.deepcopy(d.config))
    other.config["listen"]["unix"] = f"{other.dir}/run/physpool.sock"
    return other


class InstanceTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)

    def test_a_second_daemon_on_the_same_store_and_pool_is_refused(self):
        self.d.start()
        alice = self.d.allocate(TOKENS["alice"], MIB, max_segments=1)
        second = twin(self.d)
        self.addCleanup(second.cleanup)
        code, log = second.start_fails()
        self.assertEqual(code, 1, log)
        self.assertIn("another physpoold owns this store or memory", log)
        self.assertIn(f"locked by pid {self.d.proc.pid}", log)
        # The first daemon still owns every page: bob gets other ones.
        bob = self.d.allocate(TOKENS["bob"], MIB, max_segments=1)
        self.assertNotEqual(bob.runs[0].iova, alice.runs[0].iova)
        self.assertEqual(self.d.get(TOKENS["alice"], alice.id).id, alice.id)
        # ...and starts again after a clean stop, with alice's lease.
        self.assertEqual(self.d.stop(), 0)
        self.d.start()
        self.assertEqual(self.d.get(TOKENS["alice"], alice.id).runs[0].iova,
                         alice.runs[0].iova)

    def test_the_same_memory_under_another_store_is_refused(self):
        self.d.start()
        second = twin(self.d)
        self.addCleanup(second.cleanup)
        second.config["store"]["path"] = f"{second.dir}/state/leases.db"
        code, log = second.start_fails()
        self.assertEqual(code, 1, log)
        self.assertIn(f"locked by pid {self.d.proc.pid}", log)
        self.assertIn("physpoold.lock", log)

    def test_two_daemons_started_at_once_cannot_both_serve(self):
        for _ in range(5):
            second = twin(self.d)
            procs = [self.d.spawn(), second.spawn()]
            end = time.time() + 20
            # One exits 1; the other serves (its health answers).
            while time.time() < end and all(p.poll() is None for p in procs):
                time.sleep(0.01)
            exited = [p for p in procs if p.poll() is not None]
            self.assertEqual(len(exited), 1, self.d.log() + second.log())
            self.assertEqual(exited[0].returncode, 1)
            alive = [p for p in procs if p.poll() is None][0]
            owner = self.d if alive is procs[0] else second
            owner.proc = alive
            harness.wait_until(lambda: os.path.exists(owner.ready_path),
                               what="the survivor serving")
            self.assertEqual(owner.stop(), 0)
            second.cleanup()


if __name__ == "__main__":
    harness.main()
