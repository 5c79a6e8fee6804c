# SPDX-License-Identifier: Apache-2.0
"""Boundaries: loopback TCP and the unix socket (docs/security.md, "TCP",
"The unix socket").

Promise: over TCP nothing that reads or changes a tenant's state answers
without a token or a client certificate, in every shipped configuration
and the embedded default (health and metrics stay open); the implicit
tenant is reached only through the unix socket, whose mode and group the
operator sets, and --check-config warns where that socket is open to every
local user.
"""
import glob
import json
import os
import subprocess
import unittest

import yaml

import harness
from harness import DAEMON_UID, OTHER_UID, TOKENS, Daemon, tool

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOBODY = 65534
# What another local user tries over TCP without credentials.
ATTACKS = [("Admin/ListTenants", "{}"), ("Admin/RevokeLease", None),
           ("Admin/ListLeases", "{}"), ("Admin/GetStats", "{}"),
           ("Pool/GetPoolInfo", "{}"), ("Pool/ListLeases", "{}"),
           ("Pool/Allocate", '{"bytes": "4096"}')]


class TcpTest(unittest.TestCase):
    def attack(self, d, target, lease_id):
        for method, body in ATTACKS:
            body = body or json.dumps({"leaseId": lease_id, "reason": "mine now"})
            got = tool(NOBODY, "call", target, method, body)
            self.assertEqual(got["code"], "UNAUTHENTICATED", (method, got))
        # health and metrics stay open
        self.assertEqual(d.health(target), harness.HEALTH.HealthCheckResponse.SERVING)
        self.assertIn("physpool_", d.metrics())

    def shipped(self, path):
        """A shipped config with its paths moved into a test directory."""
        d = Daemon(uid=DAEMON_UID)
        self.addCleanup(d.cleanup)
        with open(path) as f:
            c = yaml.safe_load(f)
        c["listen"]["unix"] = f"{d.dir}/run/physpool.sock"
        c["listen"].pop("fd_socket", None)
        if c["listen"].get("tcp"):
            c["listen"]["tcp"] = "127.0.0.1:0"
        c["metrics"] = {"listen": "127.0.0.1:0"}
        c["source"]["sim"]["dir"] = f"{d.dir}/run/sim"
        c["source"]["sim"].setdefault("segments", [{"bytes": 16 << 20}])
        c["store"]["path"] = f"{d.dir}/state/leases.db"
        if "unix_group" in c["listen"]:
            c["listen"]["unix_group"] = str(DAEMON_UID)
        d.config = c
        return d

    def test_the_shipped_systemd_config_wants_credentials_over_tcp(self):
        d = self.shipped(os.path.join(SRC, "deploy/systemd/physpoold.yaml"))
        self.assertTrue(d.config.get("implicit_tenant"))
        d.start()
        # The operator's own process, through the socket: the implicit tenant.
        lease = d.allocate("", 4096)
        self.attack(d, d.tcp_target(), lease.id)
        # Another local user cannot open the socket (mode 0660, the
        # daemon's group) ...
        got = tool(NOBODY, "connect", d.socket)
        self.assertFalse(got["connected"], got)
        # ... and alice's lease is untouched.
        self.assertEqual(d.get("", lease.id).id, lease.id)

    def test_every_shipped_sim_config_wants_credentials_over_tcp(self):
        configs = glob.glob(os.path.join(SRC, "deploy/**/physpoold.yaml"), recursive=True)
        self.assertGreaterEqual(len(configs), 4)
        for path in configs:
            with open(path) as f:
                c = yaml.safe_load(f)
            with self.subTest(config=path):
                if c.get("source", {}).get("type", "sim") != "sim":
                    # vfio configs cannot start here: none has an implicit tenant.
                    self.assertFalse(c.get("implicit_tenant", False), path)
                    continue
                d = self.shipped(path)
                if not d.config["listen"].get("tcp"):
                    d.config["listen"]["tcp"] = "127.0.0.1:0"
                d.start()
                self.attack(d, d.tcp_target(), "l-0")
                d.stop()

    def test_the_embedded_default_wants_credentials_over_tcp(self):
        d = Daemon(uid=DAEMON_UID)
        self.addCleanup(d.cleanup)
        xdg = os.path.join(d.dir, "xdg")
        os.makedirs(xdg)
        os.chown(xdg, DAEMON_UID, DAEMON_UID)
        os.chmod(xdg, 0o700)
        ready = os.path.join(xdg, "ready.json")
        log = open(d.log_path, "w")
        env = dict(os.environ, XDG_RUNTIME_DIR=xdg)
        d.proc = subprocess.Popen(
            [harness.PHYSPOOLD, "--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
             "--sim-dir", f"{xdg}/sim", "--ready-file", ready],
            stderr=log, env=env, preexec_fn=harness.as_uid(DAEMON_UID))
        log.close()
        harness.wait_until(lambda: os.path.exists(ready), what="ready")
        with open(ready) as f:
            d.ready = json.load(f)
        d.config["listen"]["unix"] = d.ready["unix"]
        self.assertIn("embedded default configuration", d.log())
        lease = d.allocate("", 4096)  # root: the implicit tenant, by socket
        self.attack(d, d.tcp_target(), lease.id)
        self.assertFalse(tool(OTHER_UID, "connect", d.socket)["connected"])

    def test_tokens_still_work_over_tcp(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.start()
        got = tool(NOBODY, "call", d.tcp_target(), "Pool/Allocate", '{"bytes": "4096"}',
                   TOKENS["alice"])
        self.assertEqual(got["code"], "OK", got)

    def test_check_config_warns_of_a_world_open_implicit_tenant(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.config["implicit_tenant"] = True
        d.config["tenants"] = []
        d.config["listen"]["unix_mode"] = "0666"
        d.write_config()
        out = subprocess.run([harness.PHYSPOOLD, "--check-config", d.config_path()],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("warning", out.stderr)
        self.assertIn("every local user", out.stderr)
        self.assertIn("listen.unix_mode", out.stderr)
        # And the start says it too.
        d.start()
        self.assertIn("every local user", d.log())
        # Where the operator opened the socket, the implicit tenant is theirs.
        self.assertTrue(tool(NOBODY, "connect", d.socket)["connected"])

    def test_the_socket_mode_and_group_are_the_operators(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.config["listen"]["unix_mode"] = "0660"
        d.config["listen"]["unix_group"] = str(OTHER_UID)
        d.start()
        st = os.stat(d.socket)
        self.assertEqual(st.st_mode & 0o777, 0o660)
        self.assertEqual(st.st_gid, OTHER_UID)
        fst = os.stat(d.fd_socket)
        self.assertEqual((fst.st_mode & 0o777, fst.st_gid), (0o660, OTHER_UID))


if __name__ == "__main__":
    harness.main()
