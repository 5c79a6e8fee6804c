# SPDX-License-Identifier: Apache-2.0
"""Boundary: signals (docs/security.md, "Signals and reloads").

Promises: SIGHUP reloads the tenants section (tokens, roles, limits) at
once and never stops the daemon; a file that does not parse keeps the
running configuration, says why and counts it; other keys wait for a
restart and the reload says which; SIGPIPE (a log reader gone) does not kill
the daemon.
"""
import os
import signal
import subprocess
import time
import unittest

import grpc

import harness
from harness import MIB, TOKENS, Daemon, code_of, sha, wait_until


class SignalsTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()

    def reload(self, what):
        mark = len(self.d.log())
        self.d.write_config()
        self.d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: what in self.d.log()[mark:], what=what)
        self.assertIsNone(self.d.proc.poll(), "SIGHUP stopped the daemon")
        return self.d.log()[mark:]

    def test_sighup_applies_tokens_roles_and_limits(self):
        held = self.d.allocate(TOKENS["alice"], MIB)
        watch = self.d.channel().unary_stream(
            "/physpool.v1.Pool/Watch",
            request_serializer=harness.PB.WatchRequest.SerializeToString,
            response_deserializer=harness.PB.LeaseEvent.FromString)(
                harness.PB.WatchRequest(), metadata=[("authorization", "Bearer " + TOKENS["bob"])],
                timeout=30)
        watch.initial_metadata()
        tenants = self.d.config["tenants"]
        tenants[:] = [t for t in tenants if t["name"] != "bob"]
        tenants.append({"name": "carol", "token_sha256": [sha("carol-token")],
                        "roles": ["tenant"]})
        next(t for t in tenants if t["name"] == "alice")["max_leases"] = 1
        self.reload("configuration reloaded")
        # bob's token is gone, and so is his Watch stream.
        self.assertEqual(code_of(lambda: self.d.allocate(TOKENS["bob"], 4096)),
                         grpc.StatusCode.UNAUTHENTICATED)
        with self.assertRaises(grpc.RpcError) as e:
            list(watch)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        # carol's works; alice's new limit holds, her lease too.
        self.assertTrue(self.d.allocate("carol-token", 4096).id)
        self.assertEqual(code_of(lambda: self.d.allocate(TOKENS["alice"], 4096)),
                         grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(self.d.get(TOKENS["alice"], held.id).id, held.id)
        self.assertEqual(self.d.metric('physpool_config_reloads_total{result="ok"}'), 1)

    def test_a_bad_file_keeps_the_running_configuration(self):
        self.d.config["tenants"] = []  # no tenants and no implicit tenant
        self.d.config["leases"]["colour"] = "red"
        log = self.reload("configuration reload refused")
        self.assertIn("leases.colour", log)
        self.assertIn(self.d.config_path(), log)
        self.assertTrue(self.d.allocate(TOKENS["bob"], 4096).id)
        self.assertEqual(self.d.metric('physpool_config_reloads_total{result="error"}'), 1)

    def test_other_keys_wait_for_a_restart(self):
        before = self.d.allocate(TOKENS["alice"], 4096)
        self.d.config["leases"]["default_ttl_seconds"] = 7
        log = self.reload("apply only at a restart")
        self.assertIn("leases.default_ttl_seconds", log)
        after = self.d.allocate(TOKENS["alice"], 4096)
        self.assertEqual(after.ttl_seconds, before.ttl_seconds)

    def test_sigpipe_does_not_kill_the_daemon(self):
        # Its log goes to a pipe whose reader is gone.
        self.d.stop()
        os.unlink(self.d.ready_path)
        r, w = os.pipe()
        self.d.proc = subprocess.Popen(
            [harness.PHYSPOOLD, "--config", self.d.config_path(), "--ready-file",
             self.d.ready_path], stderr=w, stdout=subprocess.DEVNULL)
        os.close(w)
        wait_until(lambda: os.path.exists(self.d.ready_path), what="ready")
        os.close(r)
        for _ in range(5):  # each logs a line: a write to the dead pipe
            code_of(lambda: self.d.allocate("not-a-token", 4096))
            self.d.proc.send_signal(signal.SIGHUP)
            time.sleep(0.1)
        self.assertIsNone(self.d.proc.poll(), "physpoold died of SIGPIPE")
        self.assertTrue(self.d.allocate(TOKENS["alice"], 4096).id)


if __name__ == "__main__":
    harness.main()
