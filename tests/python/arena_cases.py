# SPDX-License-Identifier: Apache-2.0
"""Arenas from Python against the real daemon: buffers (constraints, their
bytes, freeing), growth and the idle release, the loss of a lease
(on_lost, lost buffers), errors. Run by package_test.py."""

import threading
from typing import Dict, List

import physpool
from case import MIB, DaemonCase, Recorder


class ArenaTest(DaemonCase):
    def test_buffers(self) -> None:
        alice, other = self.connect(), self.connect()
        with alice.arena(4 * MIB, label="py-arena") as arena:
            self.assertFalse(arena.closed)
            buffers: List[physpool.Buffer] = []
            for i in range(16):
                b = arena.allocate(12 << 10, alignment=16 << 10, boundary=64 << 10)
                self.assertEqual((b.bytes, len(b.runs), len(b.memory)), (12 << 10, 1, 12 << 10))
                self.assertEqual((b.iova, b.iova % (16 << 10)), (b.runs[0].iova, 0))
                self.assertEqual(b.iova >> 16, (b.iova + b.bytes - 1) >> 16)
                b.memory[:] = bytes([i + 1]) * b.bytes
                buffers.append(b)
            self.assertEqual(len({b.id for b in buffers}), 16)
            spans = sorted((b.iova, b.iova + b.bytes) for b in buffers)
            self.assertTrue(all(a[1] <= b[0] for a, b in zip(spans, spans[1:])))
            for i, b in enumerate(buffers):
                self.assertEqual(b.memory.tobytes(), bytes([i + 1]) * b.bytes)
            # The buffers are the lease's memory at their IOVAs: another
            # mapping of the arena's one lease sees them there.
            leases = self.d.leases()
            self.assertEqual([lease["label"] for lease in leases], ["py-arena"])
            with other.attach(leases[0]["id"]) as view:
                for i, b in enumerate(buffers):
                    run = [r for r in view.runs if r.iova <= b.iova < r.iova + r.bytes][0]
                    at = b.iova - run.iova
                    self.assertEqual(run.memory[at:at + b.bytes].tobytes(),
                                     bytes([i + 1]) * b.bytes)
            with arena.allocate(1) as page:  # whole pages
                self.assertEqual(page.bytes, 4096)
            self.assertTrue(page.freed)
            self.assertEqual(arena.live_buffers, 16)
            memory = buffers[0].memory
            for b in buffers:
                b.free()
                b.free()  # idempotent
            with self.assertRaises(ValueError):
                memory[0]
            self.assertEqual(arena.live_buffers, 0)
        self.assertTrue(arena.closed)
        with self.assertRaises(physpool.FailedPrecondition):
            arena.allocate(4096)
        self.wait_for(lambda: not self.d.leases(), what="the arena's lease released")

    def test_errors(self) -> None:
        alice = self.connect()
        with self.assertRaises(physpool.InvalidArgument):
            alice.arena(0)
        with self.assertRaises(physpool.InvalidArgument):
            alice.arena(2 * MIB, max_bytes=MIB)
        with alice.arena(MIB) as arena:
            for bad in ({"bytes": 0}, {"bytes": 4096, "alignment": 3},
                        {"bytes": 8192, "boundary": 4096}):
                with self.assertRaises(physpool.InvalidArgument, msg=str(bad)) as e:
                    arena.allocate(**bad)
                self.assertEqual(e.exception.code, "INVALID_ARGUMENT")
            with self.assertRaises(physpool.ResourceExhausted):
                arena.allocate(2 * MIB)  # no growth

    def test_growth_and_idle_release(self) -> None:
        alice = self.connect()
        with alice.arena(MIB, max_bytes=4 * MIB, idle_release=0.2) as arena:
            first = arena.allocate(MIB)
            self.assertEqual(len(self.d.leases()), 1)
            grown = arena.allocate(MIB, max_segments=0)  # a second lease
            self.assertEqual(len(self.d.leases()), 2)
            grown.memory[:4] = b"grow"
            grown.free()
            self.wait_for(lambda: len(self.d.leases()) == 1, what="the idle growth lease released")
            with self.assertRaises(physpool.ResourceExhausted):
                arena.allocate(8 * MIB)  # beyond max_bytes
            first.free()

    def test_loss_reaches_on_lost(self) -> None:
        alice = self.connect()
        by_id: Dict[int, physpool.Buffer] = {}
        seen_inside: List[bytes] = []
        recorder = Recorder()

        def on_lost(loss: physpool.ArenaLoss) -> None:
            # The memory is still mapped while on_lost runs.
            seen_inside.extend(by_id[i].memory[:4].tobytes() for i in loss.buffers)
            recorder(loss)

        with alice.arena(MIB, on_lost=on_lost) as arena:
            a, b = arena.allocate(64 << 10), arena.allocate(64 << 10)
            by_id.update({a.id: a, b.id: b})
            a.memory[:4] = b"lost"
            b.memory[:4] = b"gone"
            lease_id = self.d.leases()[0]["id"]
            self.d.ctl("lease", "revoke", lease_id, "--reason", "arena test")
            self.wait_for(lambda: recorder.events, what="on_lost")
            loss = recorder.events[0]
            self.assertEqual((loss.lease_id, loss.kind, loss.reason, loss.deadline_unix_ms),
                             (lease_id, "revoked", "arena test", 0))
            self.assertEqual(sorted(loss.buffers), sorted([a.id, b.id]))
            self.assertEqual(sorted(seen_inside), [b"gone", b"lost"])
            self.assertIsNot(recorder.threads[0], threading.main_thread())
            for buf in (a, b):
                self.assertTrue(buf.lost)
                self.assertEqual(buf.runs, ())
                with self.assertRaises(ValueError):  # released after on_lost
                    buf.memory[0]
                buf.free()
            with self.assertRaises(physpool.Unavailable):
                arena.allocate(4096)  # lost and may not grow
