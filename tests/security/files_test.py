# SPDX-License-Identifier: Apache-2.0
"""Boundaries: the backing and view files, a crash, a full disk
(docs/security.md, "Backing and view files", "A crash", "A full disk").

Promises: only the daemon opens its files (a planted link is refused, a
view file is its own and 0600); every answered grant survives a kill -9;
a store that cannot take writes makes the daemon refuse changes
(UNAVAILABLE, NOT_SERVING) rather than answer what it did not record.
"""
import os
import subprocess
import threading
import unittest

import grpc

import harness
from harness import MIB, OTHER_UID, TOKENS, Daemon, code_of, tool, wait_until


class FilesTest(unittest.TestCase):
    def test_a_planted_link_in_the_sim_directory_is_refused(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        sim = d.config["source"]["sim"]["dir"]
        os.makedirs(sim, mode=0o700)
        os.symlink("/etc/passwd", os.path.join(sim, "segment-0.mem"))
        code, log = d.start_fails()
        self.assertEqual(code, 1, log)
        self.assertIn("symlink", log)
        with open("/etc/passwd") as f:
            self.assertIn("root", f.read())

    def test_views_and_segments_are_the_daemons_alone(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.config["listen"]["unix_mode"] = "0666"
        d.start()
        lease = d.allocate(TOKENS["alice"], MIB)
        line, fds = d.backing(lease.id, TOKENS["alice"])
        self.assertTrue(line.startswith("ok"), line)
        for fd in fds:
            os.close(fd)
        sim = d.config["source"]["sim"]["dir"]
        self.assertEqual(os.stat(sim).st_mode & 0o777, 0o700)
        for name in os.listdir(sim):
            self.assertEqual(os.stat(os.path.join(sim, name)).st_mode & 0o077, 0, name)
        # Another user reaches no file, only the sockets, and through them
        # only with a token.
        for name in os.listdir(sim):
            got = tool(OTHER_UID, "open", os.path.join(sim, name))
            self.assertFalse(got["opened"], name)
        line, _ = d.backing(lease.id, "not-a-token")
        self.assertTrue(line.startswith("error UNAUTHENTICATED"), line)


class CrashTest(unittest.TestCase):
    def test_every_answered_grant_survives_kill_9(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.start()
        granted, lock = {}, threading.Lock()

        def client(token):
            while True:
                try:
                    lease = d.allocate(token, 65536)
                except grpc.RpcError:
                    return  # the daemon is gone
                with lock:
                    granted[lease.id] = (token, [(r.iova, r.length) for r in lease.runs])

        threads = [threading.Thread(target=client, args=(TOKENS[t],))
                   for t in ("alice", "bob", "alice", "bob")]
        for t in threads:
            t.start()
        wait_until(lambda: len(granted) >= 40, what="grants under load")
        d.kill()
        for t in threads:
            t.join()
        d.start()
        pages = set()
        for lease_id, (token, runs) in granted.items():
            got = d.get(token, lease_id)
            self.assertEqual([(r.iova, r.length) for r in got.runs], runs)
            for iova, length in runs:
                for page in range(iova, iova + length, 4096):
                    self.assertNotIn(page, pages)
                    pages.add(page)


class FullDiskTest(unittest.TestCase):
    def test_a_full_disk_is_refused_not_answered(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        state = os.path.join(d.dir, "state")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", state],
                       check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", state], check=False)
        d.start()
        filler = os.path.join(state, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass  # full
        os.close(fd)
        codes = set()
        for _ in range(60):  # until a write no longer fits
            codes.add(code_of(lambda: d.allocate(TOKENS["alice"], 4096,
                                                 label="x" * 200)))
            if grpc.StatusCode.UNAVAILABLE in codes:
                break
        self.assertIn(grpc.StatusCode.UNAVAILABLE, codes)
        os.unlink(filler)
        wait_until(lambda: code_of(lambda: d.allocate(TOKENS["alice"], 4096)) ==
                   grpc.StatusCode.OK, what="the store taking writes again")
        # Every lease it answered is there after a restart.
        listed = d.call("Pool/ListLeases", harness.PB.ListLeasesRequest(page_size=1000),
                        TOKENS["alice"]).leases
        d.kill()
        d.start()
        for lease in listed:
            self.assertEqual(d.get(TOKENS["alice"], lease.id).id, lease.id)


if __name__ == "__main__":
    harness.main()
