#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""physpoold --check-config FILE: a valid file prints the effective config
(which is itself valid and prints the same again) and exits 0; an invalid
one names FILE:LINE: key: reason and exits 2; nothing is started.

usage: check_config_test.py PHYSPOOLD SOURCE_DIR
"""
import os
import subprocess
import sys
import tempfile
import unittest

import yaml

PHYSPOOLD, SRC = sys.argv[1], os.path.abspath(sys.argv[2])


def check(text, *flags):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "physpoold.yaml")
        with open(path, "w") as f:
            f.write(text)
        out = subprocess.run([PHYSPOOLD, "--check-config", path, *flags],
                             capture_output=True, text=True, timeout=30)
        return out.returncode, out.stdout, out.stderr.replace(path, "FILE")


VALID = """listen:
  unix: /tmp/physpool-check/x.sock
  tcp: ""
source:
  type: sim
  sim:
    dir: /tmp/physpool-check/sim
    segments:
      - {bytes: 1048576, freelist: 0, numa: 1}
leases:
  default_ttl_seconds: 10
tenants:
  - name: t
    token_sha256: [b5d56f2eacf505c2639b22468f3a8b1bcaf7d619cadbab47dc6ce515fc4c3612]
    roles: [tenant, admin]
    max_leases: 3
"""


class CheckConfigTest(unittest.TestCase):
    def test_valid_prints_the_effective_config(self):
        code, out, err = check(VALID)
        self.assertEqual(code, 0, err)
        self.assertIn("FILE: configuration is valid", err)
        cfg = yaml.safe_load(out)
        self.assertEqual(cfg["listen"]["unix"], "/tmp/physpool-check/x.sock")
        # Filled in: the fd socket's default, the defaults of absent keys.
        self.assertEqual(cfg["listen"]["fd_socket"], "/tmp/physpool-check/x.sock.fds")
        self.assertEqual(cfg["leases"]["default_ttl_seconds"], 10)
        self.assertEqual(cfg["leases"]["max_ttl_seconds"], 3600)
        self.assertEqual(cfg["source"]["sim"]["segments"], [{"bytes": 1048576, "freelist": 0, "numa": 1}])
        self.assertEqual(cfg["tenants"][0]["roles"], ["tenant", "admin"])
        self.assertEqual(cfg["tenants"][0]["max_leases"], 3)
        self.assertFalse(os.path.exists("/tmp/physpool-check"), "check-config created files")

    def test_output_is_valid_and_stable(self):
        vfio = os.path.join(SRC, "deploy", "k8s", "overlays", "vfio", "physpoold.yaml")
        with open(vfio) as f:
            vfio_text = f.read()
        for name, text in [("sim", VALID), ("vfio", vfio_text)]:
            with self.subTest(name):
                code, once, err = check(text)
                self.assertEqual(code, 0, err)
                code, twice, err = check(once)
                self.assertEqual(code, 0, err)
                self.assertEqual(once, twice)

    def test_flags_apply(self):
        code, out, err = check(VALID, "--unix", "/tmp/other.sock", "--log-level", "debug")
        self.assertEqual(code, 0, err)
        cfg = yaml.safe_load(out)
        self.assertEqual(cfg["listen"]["unix"], "/tmp/other.sock")
        self.assertEqual(cfg["log_level"], "debug")

    def test_invalid_names_file_line_key(self):
        cases = [
            (VALID.replace("  default_ttl_seconds: 10", "  default_ttl_seconds: 10\n  colour: red"),
             "FILE:12: leases.colour: unknown key"),
            (VALID.replace("bytes: 1048576", "bytes: 1000"),
             "FILE:9: source.sim.segments[0].bytes: must be a positive multiple of the page size"),
            (VALID.replace("roles: [tenant, admin]", "roles: [tenant, wizard]"),
             "FILE:15: tenants[0].roles:"),
            ("listen: [\n", "FILE:2: YAML syntax"),
            (VALID.replace('tcp: ""', "tcp: 0.0.0.0:7600"),
             "FILE: listen.tcp: refusing TCP off loopback without TLS"),
        ]
        for text, want in cases:
            with self.subTest(want=want):
                code, out, err = check(text)
                self.assertEqual(code, 2, err)
                self.assertEqual(out, "")
                self.assertIn(want, err)

    def test_missing_file(self):
        out = subprocess.run([PHYSPOOLD, "--check-config", "/nonexistent/physpoold.yaml"],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 2)
        self.assertIn("/nonexistent/physpoold.yaml", out.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
