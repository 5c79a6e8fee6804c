#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""deploy/systemd: `systemd-analyze verify` passes on the unit (and fails on
a broken copy); the sysusers and tmpfiles snippets apply to a scratch root;
and the real daemon, given a NOTIFY_SOCKET datagram socket this test owns,
sends READY=1 only once health is SERVING on every listener, WATCHDOG=1 at
half of WATCHDOG_USEC, and STOPPING=1 on SIGTERM before it exits.

usage: systemd_test.py PHYSPOOLD GEN_DIR SOURCE_DIR
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import grpc

PHYSPOOLD, GEN, SRC = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
sys.path.insert(0, GEN)
import health_pb2  # noqa: E402

SYSTEMD = os.path.join(SRC, "deploy", "systemd")


def need(tool):
    path = shutil.which(tool)
    if not path:
        raise AssertionError(f"{tool} is not installed (package systemd; make deps)")
    return path


def health(target):
    with grpc.insecure_channel(target) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check",
                               request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                               response_deserializer=health_pb2.HealthCheckResponse.FromString)
        status = check(health_pb2.HealthCheckRequest(), timeout=5).status
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)


class UnitTest(unittest.TestCase):
    def setUp(self):
        # A scratch root with the unit installed as docs/deploy.md says, the
        # daemon at its ExecStart path and the host's systemd units (the
        # targets it orders against).
        self.root = tempfile.mkdtemp(prefix="physpool-systemd-")
        for d in ["usr/local/bin", "etc/systemd/system", "usr/lib/systemd", "etc/physpool"]:
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        shutil.copy(PHYSPOOLD, os.path.join(self.root, "usr/local/bin/physpoold"))
        shutil.copytree("/usr/lib/systemd/system", os.path.join(self.root, "usr/lib/systemd/system"),
                        symlinks=True)
        self.unit = os.path.join(self.root, "etc/systemd/system/physpoold.service")
        shutil.copy(os.path.join(SYSTEMD, "physpoold.service"), self.unit)
        # verify checks only that ExecStart names an executable.
        shutil.copy(PHYSPOOLD, os.path.join(self.root, "usr/local/bin/physpool-keeper"))
        self.keeper = os.path.join(self.root, "etc/systemd/system/physpool-keeper.service")
        shutil.copy(os.path.join(SYSTEMD, "physpool-keeper.service"), self.keeper)

    def tearDown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def verify(self, unit="physpoold.service"):
        out = subprocess.run([need("systemd-analyze"), "verify", "--man=no", f"--root={self.root}",
                              "/etc/systemd/system/" + unit],
                             capture_output=True, text=True)
        return out.returncode, (out.stdout + out.stderr).strip()

    def test_verify_passes(self):
        code, out = self.verify()
        self.assertEqual((code, out), (0, ""))

    def test_keeper_unit_verifies_and_never_restarts_itself(self):
        # physpool-keeper's unit (docs/vfio.md, "Restart with isolation on"):
        # its own unit, so a restart of physpoold.service leaves it running;
        # a restarted keeper would hold nothing, so it does not restart.
        code, out = self.verify("physpool-keeper.service")
        self.assertEqual((code, out), (0, ""))
        with open(self.keeper) as f:
            lines = set(f.read().splitlines())
        for want in ["Restart=no", "User=physpool", "RuntimeDirectory=physpool-keeper",
                     "RuntimeDirectoryMode=0700", "Before=physpoold.service",
                     "ExecStart=/usr/local/bin/physpool-keeper --socket "
                     "/run/physpool-keeper/keeper.sock"]:
            self.assertIn(want, lines)

    def test_verify_catches_a_broken_unit(self):
        with open(self.unit) as f:
            text = f.read()
        self.assertIn("Type=notify\n", text)
        with open(self.unit, "w") as f:
            f.write(text.replace("Type=notify\n", "Type=notfy\n"))
        code, out = self.verify()
        self.assertIn("Failed to parse service type", out)

    def test_unit_has_the_hardening(self):
        with open(self.unit) as f:
            lines = set(f.read().splitlines())
        for want in ["Type=notify", "Restart=on-failure", "ProtectSystem=strict",
                     "NoNewPrivileges=yes", "DeviceAllow=/dev/vfio/* rw", "LimitMEMLOCK=infinity",
                     "StateDirectory=physpool", "RuntimeDirectory=physpool", "WatchdogSec=30s"]:
            self.assertIn(want, lines)

    def test_sysusers_and_tmpfiles_apply(self):
        etc = os.path.join(self.root, "etc")
        for f in ["passwd", "group", "shadow", "gshadow"]:
            open(os.path.join(etc, f), "w").close()
        out = subprocess.run([need("systemd-sysusers"), f"--root={self.root}",
                              os.path.join(SYSTEMD, "physpool.sysusers.conf")],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(os.path.join(etc, "passwd")) as f:
            self.assertRegex(f.read(), r"(?m)^physpool:x:\d+:\d+:physpool daemon:/var/lib/physpool:")
        out = subprocess.run([need("systemd-tmpfiles"), f"--root={self.root}", "--create",
                              os.path.join(SYSTEMD, "physpool.tmpfiles.conf")],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(os.path.isdir(os.path.join(self.root, "dev/hugepages/physpool")))

    def test_sample_config_is_valid(self):
        out = subprocess.run([PHYSPOOLD, "--check-config", os.path.join(SYSTEMD, "physpoold.yaml")],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)


class NotifyTest(unittest.TestCase):
    def test_ready_watchdog_stopping(self):
        work = tempfile.mkdtemp(prefix="physpool-notify-")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(os.path.join(work, "notify"))
        notify.settimeout(20)
        sock = os.path.join(work, "physpool.sock")
        ready_file = os.path.join(work, "ready.json")
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(work, "notify"), WATCHDOG_USEC="300000")
        log = open(os.path.join(work, "physpoold.log"), "w")
        proc = subprocess.Popen([PHYSPOOLD, "--unix", sock, "--tcp", "127.0.0.1:0",
                                 "--metrics", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
                                 "--sim-dir", os.path.join(work, "sim"),
                                 "--ready-file", ready_file], env=env, stderr=log)
        try:
            first = notify.recv(4096).decode()
            # The first message is READY=1, and by then every listener is up
            # and says SERVING.
            self.assertTrue(first.startswith("READY=1\n"), first)
            self.assertIn("STATUS=serving", first)
            self.assertIsNone(proc.poll())
            with open(ready_file) as f:
                ports = json.load(f)
            self.assertEqual(health("unix:" + sock), "SERVING")
            self.assertEqual(health(f"127.0.0.1:{ports['tcp_port']}"), "SERVING")
            self.assertEqual(health(f"127.0.0.1:{ports['health_port']}"), "SERVING")
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics_port']}/metrics",
                                        timeout=5) as r:
                self.assertIn(b"physpool_pages", r.read())
            # The health-only listener has no Pool service.
            with grpc.insecure_channel(f"127.0.0.1:{ports['health_port']}") as ch:
                info = ch.unary_unary("/physpool.v1.Pool/GetPoolInfo",
                                      request_serializer=lambda _: b"",
                                      response_deserializer=lambda b: b)
                with self.assertRaises(grpc.RpcError) as e:
                    info(b"", timeout=5)
                self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
            # Watchdog: every 150 ms.
            t0 = time.monotonic()
            pings = 0
            while time.monotonic() - t0 < 1.0:
                msg = notify.recv(4096).decode()
                self.assertEqual(msg, "WATCHDOG=1")
                pings += 1
            self.assertGreaterEqual(pings, 5)
            self.assertLessEqual(pings, 9)
            proc.send_signal(signal.SIGTERM)
            t_term = time.monotonic()
            while True:
                msg = notify.recv(4096).decode()
                if msg != "WATCHDOG=1":
                    break
            self.assertTrue(msg.startswith("STOPPING=1\n"), msg)
            self.assertEqual(proc.wait(timeout=15), 0)
            print(f"\nSIGTERM to exit: {time.monotonic() - t_term:.3f} s")
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
            notify.close()
            shutil.rmtree(work, ignore_errors=True)

    def test_no_notify_socket_is_fine(self):
        with tempfile.TemporaryDirectory() as work:
            ready = os.path.join(work, "ready.json")
            env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
            proc = subprocess.Popen([PHYSPOOLD, "--unix", os.path.join(work, "s.sock"), "--tcp", "",
                                     "--metrics", "", "--sim-dir", os.path.join(work, "sim"),
                                     "--ready-file", ready], env=env, stderr=subprocess.DEVNULL)
            for _ in range(200):
                if os.path.exists(ready):
                    break
                time.sleep(0.05)
            self.assertTrue(os.path.exists(ready))
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=15), 0)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
