# SPDX-License-Identifier: Apache-2.0
"""Boundary: an operator's admin calls, then a restart (docs/security.md,
"Segments and restarts").

Promise: after any sequence of admin operations a restart succeeds with
every live lease. A segment of the configuration file cannot be removed (it
is drained instead; the answer says how to take it out); segments added at
run time come back at the same IOVA, and go for good when removed.
"""
import random
import signal
import unittest

import grpc

import harness
from harness import MIB, TOKENS, Daemon, code_of


class SegmentsTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()

    def admin(self, method, req):
        return self.d.call("Admin/" + method, req, TOKENS["root"])

    def segments(self):
        return list(self.admin("ListSegments", harness.PB.ListSegmentsRequest()).segments)

    def test_a_configured_segment_is_not_removed(self):
        alice = self.d.allocate(TOKENS["alice"], MIB, max_segments=1)
        empty = [s for s in self.segments() if s.id != alice.runs[0].segment_id][0]
        try:
            self.admin("RemoveSegment", harness.PB.SegmentRequest(segment_id=empty.id))
            self.fail("a configured segment was removed")
        except grpc.RpcError as e:
            self.assertEqual(e.code(), grpc.StatusCode.FAILED_PRECONDITION)
            self.assertIn("configuration file", e.details())
            self.assertIn("drain", e.details())
        self.assertEqual(self.d.stop(), 0)
        self.d.start()
        self.assertEqual(self.d.get(TOKENS["alice"], alice.id).runs[0].iova,
                         alice.runs[0].iova)
        self.assertEqual(len(self.segments()), 2)

    def test_any_sequence_of_admin_calls_restarts_with_every_lease(self):
        rng = random.Random(23)
        live = {}  # lease id -> (token, [(iova, length)])
        added = []  # IOVAs (ids are numbered again at a restart)
        pb = harness.PB

        def check():
            for lease_id, (token, runs) in live.items():
                got = self.d.get(token, lease_id)
                self.assertEqual([(r.iova, r.length) for r in got.runs], runs)
            listed = self.d.call("Admin/ListLeases", pb.AdminListLeasesRequest(page_size=1000),
                                 TOKENS["root"]).leases
            self.assertEqual(sorted(l.id for l in listed), sorted(live))

        for step in range(120):
            op = rng.choice(["alloc", "alloc", "release", "revoke", "add", "remove",
                             "drain", "undrain"])
            segs = self.segments()
            if op == "alloc":
                token = TOKENS[rng.choice(["alice", "bob"])]
                try:
                    lease = self.d.allocate(token, rng.choice([4096, 65536, MIB]))
                    live[lease.id] = (token, [(r.iova, r.length) for r in lease.runs])
                except grpc.RpcError as e:
                    self.assertIn(e.code(), (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                             grpc.StatusCode.FAILED_PRECONDITION))
            elif op in ("release", "revoke") and live:
                lease_id = rng.choice(sorted(live))
                token, _ = live.pop(lease_id)
                if op == "release":
                    self.d.release(token, lease_id)
                else:
                    self.admin("RevokeLease", pb.RevokeLeaseRequest(lease_id=lease_id))
            elif op == "add" and len(added) < 3:
                seg = self.admin("AddSegment", pb.AddSegmentRequest(bytes=2 * MIB)).segment
                added.append(seg.iova)
            elif op == "remove":
                seg = rng.choice(segs)
                code = code_of(lambda: self.admin("RemoveSegment",
                                                  pb.SegmentRequest(segment_id=seg.id)))
                if code == grpc.StatusCode.OK:
                    self.assertIn(seg.iova, added, "a configured segment went")
                    added.remove(seg.iova)
                else:
                    self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION)
            elif op in ("drain", "undrain"):
                seg = rng.choice(segs)
                self.admin("DrainSegment" if op == "drain" else "UndrainSegment",
                           pb.SegmentRequest(segment_id=seg.id))
            if step % 15 == 14:
                self.d.stop(signal.SIGTERM if step % 30 == 14 else signal.SIGKILL)
                self.d.start()
                check()
                self.assertEqual(sorted(s.iova for s in self.segments())[2:], sorted(added))
        check()


if __name__ == "__main__":
    harness.main()
