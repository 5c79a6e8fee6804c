# SPDX-License-Identifier: Apache-2.0
"""Boundaries: physpool-keeper's socket, and a daemon that hangs
(docs/security.md, "The keeper", "A hung daemon").

Promises: only the keeper's own uid (or root) reaches what it holds; a
physpoold that stops answering (stopped, deadlocked) is killed and started
again by physpool-keeper alone: the keeper and what it holds stay, and no
lease is voided.
"""
import os
import signal
import socket
import subprocess
import unittest

import harness
from harness import MIB, TOKENS, Daemon, wait_until

KEEPER = os.environ.get("PHYSPOOL_KEEPER", "")


def stop(keeper):
    """SIGTERM: the keeper stops its daemon, then itself."""
    if keeper.poll() is None:
        keeper.terminate()
    try:
        keeper.wait(timeout=15)
    except subprocess.TimeoutExpired:
        keeper.kill()
        keeper.wait()


class KeeperSocketTest(unittest.TestCase):
    def test_another_uid_is_refused(self):
        self.assertTrue(KEEPER, "PHYSPOOL_KEEPER names physpool-keeper")
        d = Daemon()
        self.addCleanup(d.cleanup)
        kdir = os.path.join(d.dir, "keeper")
        keeper = subprocess.Popen([KEEPER, f"--socket={kdir}/keeper.sock"],
                                  stderr=subprocess.PIPE, text=True)
        self.addCleanup(stop, keeper)
        wait_until(lambda: os.path.exists(f"{kdir}/keeper.sock"), what="the keeper")
        # Its directory is its own (0700): another uid cannot even connect.
        self.assertEqual(os.stat(kdir).st_mode & 0o777, 0o700)
        got = harness.tool(harness.OTHER_UID, "connect", f"{kdir}/keeper.sock")
        self.assertFalse(got["connected"], got)
        # With the directory opened, the keeper itself refuses the peer.
        os.chmod(kdir, 0o755)
        os.chmod(f"{kdir}/keeper.sock", 0o777)
        harness.tool(harness.OTHER_UID, "connect-seqpacket", f"{kdir}/keeper.sock")
        keeper.terminate()
        _, err = keeper.communicate(timeout=10)
        self.assertIn(f"refused a peer of uid {harness.OTHER_UID}", err)


class HungDaemonTest(unittest.TestCase):
    def test_the_keeper_restarts_a_hung_daemon_and_keeps_the_leases(self):
        self.assertTrue(KEEPER, "PHYSPOOL_KEEPER names physpool-keeper")
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.write_config()
        ksock = os.path.join(d.dir, "keeper", "keeper.sock")
        log = open(os.path.join(d.dir, "keeper.log"), "w")
        keeper = subprocess.Popen(
            [KEEPER, f"--socket={ksock}", "--watchdog-sec=2", "--",
             harness.PHYSPOOLD, "--config", d.config_path(), "--ready-file", d.ready_path],
            stderr=log)
        log.close()
        self.addCleanup(stop, keeper)
        wait_until(lambda: os.path.exists(d.ready_path), timeout=30, what="ready")
        d.ready = harness.json.load(open(d.ready_path))
        lease = d.allocate(TOKENS["alice"], MIB)
        first = d.ready["pid"]
        os.unlink(d.ready_path)
        os.kill(first, signal.SIGSTOP)  # hung: it answers nothing
        wait_until(lambda: os.path.exists(d.ready_path), timeout=30,
                   what="the daemon started again")
        d.ready = harness.json.load(open(d.ready_path))
        self.assertNotEqual(d.ready["pid"], first)
        self.assertIsNone(keeper.poll(), "the keeper itself went")
        with open(os.path.join(d.dir, "keeper.log")) as f:
            self.assertIn("hangs", f.read())
        # (A connection to the stopped daemon may be reused once: retried.)
        wait_until(lambda: harness.code_of(lambda: d.get(TOKENS["alice"], lease.id)) ==
                   harness.grpc.StatusCode.OK, what="the lease from the new daemon")
        self.assertEqual(d.get(TOKENS["alice"], lease.id).runs[0].iova, lease.runs[0].iova)


if __name__ == "__main__":
    harness.main()
