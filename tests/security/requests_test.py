# SPDX-License-Identifier: Apache-2.0
"""Boundary: the request path (docs/security.md, "Requests").

Promises: a request id retried with different parameters is always
rejected, before and after a restart (no two different requests share a
fingerprint); one lease always fits one answer page, whatever
leases.max_runs_per_lease allows (the daemon refuses a value whose largest
lease would not fit).
"""
import hashlib
import os
import re
import unittest

import grpc

import harness
from harness import MIB, TOKENS, Daemon, code_of


class RequestIdTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()

    def allocate(self, **kw):
        return self.d.allocate(TOKENS["alice"], 4096, request_id="job-1", **kw)

    def test_a_retry_with_other_parameters_is_rejected(self):
        sha = hashlib.sha256(b"claim-token").hexdigest()
        first = self.allocate(label="x|" + sha)
        # The same request (waiting or not): the same lease.
        self.assertEqual(self.allocate(label="x|" + sha, may_wait=True).id, first.id)
        others = [dict(label="x", access_token_sha256=sha), dict(label="x|" + sha, ttl_seconds=5),
                  dict(label="x|" + sha, may_reclaim=True), dict(label="x|" + sha, preemptible=True),
                  dict(label="x|" + sha, numa_node=0), dict(label="x|" + sha, alignment=8192)]
        for other in others:
            with self.subTest(other=other):
                try:
                    self.allocate(**other)
                    self.fail("a retry with other parameters got the lease")
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.FAILED_PRECONDITION)
                    self.assertIn("other parameters", e.details())
        # ... and after a restart, from the store.
        self.d.kill()
        self.d.start()
        self.assertEqual(self.allocate(label="x|" + sha).id, first.id)
        self.assertEqual(code_of(lambda: self.allocate(label="x", access_token_sha256=sha)),
                         grpc.StatusCode.FAILED_PRECONDITION)


class AnswerPageTest(unittest.TestCase):
    def test_one_lease_always_fits_one_answer_page(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        # Backing paths of ~3000 bytes: each run of a lease costs that much
        # in an admin's answer.
        deep = os.path.join(d.dir, "run", *(["d" * 240] * 12))
        d.config["source"]["sim"]["dir"] = deep
        d.config["leases"]["max_runs_per_lease"] = 65536
        d.config["source"]["sim"]["segments"] = [{"bytes": 4096 * 2 * 1700}]
        try:
            d.start()
            runs = 1700  # an old daemon starts: its answer would be > 4 MiB
        except RuntimeError as e:
            m = re.search(r"at most (\d+) here", str(e))
            self.assertTrue(m, str(e))
            runs = int(m.group(1))
            self.assertLess(runs, 1700)
            d.config["leases"]["max_runs_per_lease"] = runs
            d.config["source"]["sim"]["segments"] = [{"bytes": 4096 * 2 * runs}]
            d.start()
        # Fill the segment page by page, free every other page, then ask for
        # `runs` pages in any number of runs: one run per hole.
        small = [d.allocate(TOKENS["alice"], 4096) for _ in range(2 * runs)]
        for lease in small[::2]:
            d.release(TOKENS["alice"], lease.id)
        big = d.allocate(TOKENS["bob"], 4096 * runs)
        self.assertEqual(len(big.runs), runs)
        # Every page of the admin's list holds at least its first lease, and
        # the list goes past the big one.
        seen, token = [], ""
        while True:
            page = d.call("Admin/ListLeases", harness.PB.AdminListLeasesRequest(
                page_size=1000, page_token=token), TOKENS["root"])
            self.assertGreater(len(page.leases), 0)
            seen += [l.id for l in page.leases]
            token = page.next_page_token
            if not token:
                break
        self.assertIn(big.id, seen)
        self.assertEqual(len(seen), runs + 1)
        self.assertEqual(len(d.call("Admin/GetLease", harness.PB.GetLeaseRequest(
            lease_id=big.id), TOKENS["root"]).lease.runs), runs)


if __name__ == "__main__":
    harness.main()
