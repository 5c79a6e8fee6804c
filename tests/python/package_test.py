# SPDX-License-Identifier: Apache-2.0
"""The physpool package against the real daemon, from the venv it was
installed into (python_package_test.sh): the install itself, regions
(allocate, write, read back through a second mapping, release), numpy
views, constraints, attach, revocation, a daemon restart under a held
region, error codes, the examples. Arenas: arena_cases.py.

usage: (python_package_test.sh) VENV/bin/python package_test.py [-v]
"""

import ctypes
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest
from typing import Callable

import numpy

import physpool
from arena_cases import ArenaTest  # noqa: F401  (run with the rest)
from case import ABI_PROBE, MIB, SOURCE, WORK, DaemonCase, Recorder
from physpool import _lib
from pp_daemon import TOKENS

BUILD = os.environ.get("PHYSPOOL_TEST_BUILD", os.path.join(SOURCE, "build"))


def project_version() -> str:
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        m = re.search(r"project\(\s*physpool\s+VERSION\s+([0-9.]+)", f.read())
    assert m, "no project(physpool VERSION ...) in CMakeLists.txt"
    return m.group(1)


class InstallTest(unittest.TestCase):
    def test_the_installed_package_and_its_bundled_library_are_used(self) -> None:
        venv = os.path.join(WORK, "venv")
        self.assertTrue(physpool.__file__.startswith(venv + os.sep), physpool.__file__)
        self.assertEqual(physpool.__version__, project_version())
        self.assertEqual(importlib.metadata.version("physpool"), project_version())
        self.assertTrue(_lib.BUNDLED.startswith(venv + os.sep))
        self.assertEqual(_lib.load()._name, _lib.BUNDLED)

    def test_structures_match_the_header(self) -> None:
        probe = json.loads(subprocess.check_output([ABI_PROBE], text=True))
        mine = {name: {"size": ctypes.sizeof(cls),
                       "fields": {f[0]: [getattr(cls, f[0]).offset, getattr(cls, f[0]).size]
                                  for f in cls._fields_}}
                for name, cls in _lib.STRUCTS.items()}
        self.assertEqual(mine, probe)

    def test_a_missing_library_is_a_clear_error(self) -> None:
        script = ("import physpool\ntry:\n    physpool.connect()\n"
                  "except physpool.LibraryNotFound as e:\n"
                  "    print(isinstance(e, physpool.Error), e.code, e.message)\n")
        env = dict(os.environ, PHYSPOOL_CLIENT_LIBRARY="/nonexistent/libphyspool-client.so.0")
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=60, cwd=WORK)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("True UNAVAILABLE libphyspool-client not found; tried "
                      "/nonexistent/libphyspool-client.so.0", out.stdout)


class RegionTest(DaemonCase):
    def test_allocate_write_read_back_release(self) -> None:
        alice = self.connect()
        other = self.connect()  # a second connection maps the lease again
        self.assertEqual((alice.tenant, alice.page_size), ("alice", 4096))
        pattern = bytes(range(256)) * 4096
        with alice.allocate(MIB, alignment=1 << 16, max_segments=1, label="py") as region:
            self.assertTrue(region.lease_id.startswith("l-"))
            self.assertRegex(region.request_id, "^[0-9a-f]{32}$")
            self.assertEqual(region.bytes, MIB)
            self.assertEqual(len(region.runs), 1)
            run = region.runs[0]
            self.assertEqual((run.iova % (1 << 16), run.bytes, len(run.memory)), (0, MIB, MIB))
            self.assertEqual((run.memory.format, run.memory.readonly), ("B", False))
            run.memory[:] = pattern
            with other.attach(region.lease_id) as view:
                self.assertTrue(view.attached)
                self.assertEqual((view.lease_id, view.bytes, view.request_id),
                                 (region.lease_id, region.bytes, region.request_id))
                self.assertEqual([r.iova for r in view.runs], [run.iova])
                self.assertEqual(view.runs[0].memory.tobytes(), pattern)
                view.runs[0].memory[:4] = b"back"
            self.assertTrue(view.released)
            self.assertEqual(bytes(run.memory[:4]), b"back")
            lease = self.lease(region.lease_id)
            assert lease is not None
            self.assertEqual((lease["label"], lease["request_id"]), ("py", region.request_id))
            memory = run.memory
        self.assertTrue(region.released)
        self.assertEqual(region.runs, ())
        with self.assertRaises(ValueError):  # released with the memory
            memory[0]
        region.release()  # idempotent
        self.assertIsNone(self.lease(region.lease_id))
        with self.assertRaises(physpool.NotFound):
            other.attach(region.lease_id)

    def test_numpy_views(self) -> None:
        alice, other = self.connect(), self.connect()
        with alice.allocate(256 << 10) as region:
            words = numpy.frombuffer(region.runs[0].memory, dtype=numpy.uint32)
            self.assertTrue(words.flags.writeable)
            self.assertEqual(words.size, 64 << 10)
            words[:] = numpy.arange(words.size, dtype=numpy.uint32) * 3
            with other.attach(region.lease_id) as view:
                seen = numpy.frombuffer(view.runs[0].memory, dtype=numpy.uint32)
                self.assertTrue((seen == numpy.arange(seen.size, dtype=numpy.uint32) * 3).all())
                seen[0] = 0xDEADBEEF
                del seen  # views over the memory go before it is unmapped
            self.assertEqual(int(words[0]), 0xDEADBEEF)
            del words

    def test_constraints_are_honoured(self) -> None:
        alice, other = self.connect(), self.connect()
        with alice.allocate(3 * MIB, alignment=MIB, max_segments=1) as r:
            self.assertEqual(len(r.runs), 1)
            self.assertEqual(r.runs[0].iova % MIB, 0)
        with alice.allocate(64 << 10, boundary=64 << 10) as r:
            for run in r.runs:
                self.assertEqual(run.iova >> 16, (run.iova + run.bytes - 1) >> 16)
        node1 = [s for s in self.d.segments() if s["numa_node"] == 1][0]
        start, end = int(node1["iova"]), int(node1["iova"]) + int(node1["bytes"])
        with alice.allocate(MIB, numa_node=1, numa_strict=True) as r:
            self.assertTrue(all(start <= run.iova < end for run in r.runs), r)
        # Fragment the pool: 256 KiB leases until it is full, every other
        # one released. 1 MiB then comes in several runs, or not at all
        # with max_segments=1. (Released memory is free once zeroed.)
        self.settle()
        pieces = []
        while True:
            try:
                pieces.append(alice.allocate(256 << 10))
            except physpool.ResourceExhausted:
                break
        self.assertGreater(len(pieces), 16)
        for piece in pieces[::2]:
            piece.release()
        self.settle()
        with alice.allocate(MIB) as r:
            self.assertGreater(len(r.runs), 1, r)
            for i, run in enumerate(r.runs):
                run.memory[:] = bytes([i + 1]) * run.bytes
            with other.attach(r.lease_id) as view:
                self.assertEqual([(v.iova, v.bytes) for v in view.runs],
                                 [(run.iova, run.bytes) for run in r.runs])
                for i, v in enumerate(view.runs):
                    self.assertEqual(v.memory.tobytes(), bytes([i + 1]) * v.bytes)
        with self.assertRaises(physpool.ResourceExhausted):
            alice.allocate(MIB, max_segments=1)
        for piece in pieces:
            piece.release()

    def test_attach(self) -> None:
        alice, bob = self.connect(), self.connect("bob")
        other = self.connect()
        with alice.allocate(64 << 10) as region:
            os.environ["PHYSPOOL_LEASE"] = region.lease_id
            try:
                with other.attach() as view:  # $PHYSPOOL_LEASE
                    self.assertEqual(view.lease_id, region.lease_id)
            finally:
                del os.environ["PHYSPOOL_LEASE"]
            with self.assertRaises(physpool.InvalidArgument):
                other.attach()
            with self.assertRaises(physpool.PermissionDenied):
                bob.attach(region.lease_id)
            # Released, an attached region only unmaps: the lease lives on.
            other.attach(region.lease_id).release()
            self.assertIsNotNone(self.lease(region.lease_id))
            self.assertFalse(region.revoked)

    def test_revocation_reaches_on_revoked(self) -> None:
        alice = self.connect()
        seen = Recorder()
        region = alice.allocate(64 << 10, on_revoked=seen)
        self.assertFalse(region.revoked)
        self.d.ctl("lease", "revoke", region.lease_id, "--reason", "python test")
        self.wait_for(lambda: seen.events, what="on_revoked")
        self.assertEqual(seen.events, [physpool.Revocation(region.lease_id, "revoked",
                                                           "python test", 0)])
        self.assertIsNot(seen.threads[0], threading.main_thread())
        self.assertTrue(region.revoked)
        self.assertEqual(region.revocation, seen.events[0])
        region.runs[0].memory[:2] = b"ok"  # still mapped until released
        region.release()
        self.assertEqual(len(seen.events), 1)

        # A callback's exception is logged, never raised into the library.
        def boom(event: physpool.Revocation) -> None:
            raise RuntimeError("boom in on_revoked")

        failing = alice.allocate(64 << 10, on_revoked=boom)
        with self.assertLogs("physpool", "ERROR") as logs:
            self.d.ctl("lease", "revoke", failing.lease_id)
            self.wait_for(lambda: logs.records, what="the logged exception")
        self.assertIn("boom in on_revoked", logs.output[0])
        failing.release()

        # Releasing from inside the callback is moved off the event thread.
        holder = []
        inside = alice.allocate(64 << 10, on_revoked=lambda e: holder[0].release())
        holder.append(inside)
        self.d.ctl("lease", "revoke", inside.lease_id)
        self.wait_for(lambda: inside.released, what="release from the callback")
        self.assertEqual(inside.revocation.kind if inside.revocation else "", "revoked")

    def test_a_held_region_survives_a_daemon_restart(self) -> None:
        alice = self.connect()
        seen = Recorder()
        region = alice.allocate(MIB, ttl=9, on_revoked=seen)
        memory = region.runs[0].memory
        memory[:] = b"\xa5" * MIB
        self.d.restart()  # SIGTERM, started again on the same store
        time.sleep(10)  # past the TTL: renewals after the restart keep it
        self.assertEqual(seen.events, [])
        self.assertFalse(region.revoked)
        self.assertEqual(memory.tobytes(), b"\xa5" * MIB)
        memory[:5] = b"after"
        with self.connect().attach(region.lease_id) as view:
            self.assertEqual(view.runs[0].memory[:8].tobytes(), b"after\xa5\xa5\xa5")
        with alice.allocate(64 << 10) as again:  # the client reconnected
            self.assertNotEqual(again.lease_id, region.lease_id)
        region.release()


class ErrorTest(DaemonCase):
    def assertCode(self, cls: type, code: str, fn: Callable[[], object]) -> physpool.Error:
        with self.assertRaises(cls) as e:
            fn()
        err = e.exception
        self.assertIsInstance(err, physpool.Error)
        self.assertEqual(err.code, code)
        self.assertTrue(err.message)
        self.assertEqual(str(err), f"{code}: {err.message}")
        return err

    def test_error_codes(self) -> None:
        alice = self.connect()
        bad = physpool.InvalidArgument
        self.assertCode(bad, "INVALID_ARGUMENT", lambda: alice.allocate(0))
        e = self.assertCode(bad, "INVALID_ARGUMENT", lambda: alice.allocate(4096, alignment=3))
        self.assertIn("power of two", e.message)
        self.assertCode(bad, "INVALID_ARGUMENT", lambda: alice.allocate(4096, numa_strict=True))
        self.assertCode(bad, "INVALID_ARGUMENT", lambda: alice.allocate(-1))  # not wrapped
        self.assertCode(bad, "INVALID_ARGUMENT", lambda: alice.allocate(1 << 64))
        self.assertCode(bad, "INVALID_ARGUMENT", lambda: alice.allocate(4096, ttl=-1))
        with self.assertRaises(TypeError):
            alice.allocate("4096")  # type: ignore
        self.assertCode(physpool.ResourceExhausted, "RESOURCE_EXHAUSTED",
                        lambda: alice.allocate(1 << 40))
        self.assertCode(physpool.Unauthenticated, "UNAUTHENTICATED",
                        lambda: physpool.connect(self.d.endpoint, token="not-a-token"))
        self.assertCode(physpool.Unavailable, "UNAVAILABLE",
                        lambda: physpool.connect("unix:/nonexistent/physpool.sock",
                                                 token=TOKENS["alice"], timeout=0.5))
        closed = self.connect()
        closed.close()
        self.assertCode(physpool.FailedPrecondition, "FAILED_PRECONDITION",
                        lambda: closed.allocate(4096))

    def test_credentials_from_the_environment(self) -> None:
        os.environ.update(PHYSPOOL_ENDPOINT=self.d.endpoint, PHYSPOOL_TOKEN=TOKENS["bob"])
        try:
            with physpool.connect() as client:
                self.assertEqual(client.tenant, "bob")
        finally:
            del os.environ["PHYSPOOL_ENDPOINT"], os.environ["PHYSPOOL_TOKEN"]


class ExamplesTest(DaemonCase):
    def run_example(self, python: str, *args: str, **env: str) -> str:
        out = subprocess.run([python, *args], capture_output=True, text=True, timeout=120,
                             cwd=WORK, env=dict(os.environ, PHYSPOOL_TOKEN=TOKENS["alice"],
                                                PYTHONDONTWRITEBYTECODE="1", **env))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        return out.stdout

    def test_examples(self) -> None:
        out = self.run_example(sys.executable, os.path.join(SOURCE, "examples/allocate.py"),
                               self.d.socket)
        self.assertRegex(out, r"lease l-[0-9a-f]+: 1048576 bytes, tenant alice")
        self.assertRegex(out, r"\n  iova 0x[0-9a-f]+ \+1048576\n")
        # Not installed: /usr/bin/python3 takes the checkout's package.
        out = self.run_example("/usr/bin/python3", os.path.join(SOURCE, "examples/allocate.py"),
                               self.d.socket, "65536", PHYSPOOL_CLIENT_LIBRARY=os.path.join(
                                   BUILD, "client/libphyspool-client.so.0"))
        self.assertIn("65536 bytes, tenant alice", out)
        out = self.run_example(sys.executable, os.path.join(SOURCE, "examples/arena.py"),
                               self.d.socket, "40")
        self.assertIn("buffer 39: iova 0x", out)
        self.assertTrue(out.endswith("arena: ok\n"), out)
        out = self.run_example(sys.executable,
                               os.path.join(SOURCE, "tests/python/typed_example.py"),
                               PHYSPOOL_ENDPOINT=self.d.endpoint)
        self.assertIn("typed example: ok", out)

    def test_the_readme_example_works_as_written(self) -> None:
        with open(os.path.join(SOURCE, "README.md")) as f:
            readme = f.read()
        section = readme[readme.index("\n## Python\n"):]
        code = re.search(r"```python\n(.*?)```", section, re.S)
        assert code, "no ```python block in the README's Python section"
        self.assertLessEqual(len(code.group(1).strip().splitlines()), 5)
        out = self.run_example(sys.executable, "-c", code.group(1),
                               PHYSPOOL_ENDPOINT=self.d.endpoint)
        self.assertRegex(out, r"l-[0-9a-f]+")


if __name__ == "__main__":
    unittest.main()
