#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""validate_cdi.mjs: a CDI spec shaped as physpool-dra writes it
(dra-contract: cdiVersion 0.6.0, kind <driver>/claim, one device per claim
with env and two mounts) is valid; broken ones are reported, one line per
problem, exit 1.

usage: validate_cdi_test.py NPM_DIR
  NPM_DIR: where `npm ci` installed tests/deploy/package-lock.json, with
  validate_cdi.mjs and cdi-schema/ copied beside it (the deploy_npm fixture)
"""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

NPM_DIR = sys.argv[1]
UID = "0b0e1f7a-5c1d-4e0a-9a53-2f7c2d8a1b11"
SPEC = {
    "cdiVersion": "0.6.0",
    "kind": "dma.physpool.io/claim",
    "devices": [{
        "name": UID,
        "containerEdits": {
            "env": ["PHYSPOOL_ENDPOINT=unix:/run/physpool/physpool.sock",
                    "PHYSPOOL_TOKEN_FILE=/var/run/physpool-claim/token",
                    "PHYSPOOL_LEASE=17", "PHYSPOOL_LEASES=mem=17,scratch=18",
                    f"PHYSPOOL_CLAIM=demo/dma/{UID}"],
            "mounts": [
                {"hostPath": "/run/physpool", "containerPath": "/run/physpool",
                 "options": ["rbind", "rw"]},
                {"hostPath": f"/var/lib/kubelet/plugins/dma.physpool.io/claims/{UID}",
                 "containerPath": "/var/run/physpool-claim", "options": ["rbind", "ro"]},
            ],
        },
    }],
}


def check(*specs):
    """(exit code, output) of validate_cdi.mjs over the specs."""
    d = tempfile.mkdtemp()
    try:
        paths = []
        for i, s in enumerate(specs):
            paths.append(os.path.join(d, f"spec{i}.json"))
            with open(paths[-1], "w") as f:
                f.write(s if isinstance(s, str) else json.dumps(s))
        out = subprocess.run([shutil.which("node") or "node",
                              os.path.join(NPM_DIR, "validate_cdi.mjs"), *paths],
                             capture_output=True, text=True, cwd=NPM_DIR)
        return out.returncode, out.stdout + out.stderr
    finally:
        shutil.rmtree(d)


class ValidateCdiTest(unittest.TestCase):
    def test_contract_spec_is_valid(self):
        code, out = check(SPEC)
        self.assertEqual(code, 0, out)
        self.assertIn("spec0.json: valid", out)

    def test_broken_specs(self):
        cases = []
        s = copy.deepcopy(SPEC)
        del s["devices"][0]["containerEdits"]
        cases.append((s, "must have required property 'containerEdits'"))
        s = copy.deepcopy(SPEC)
        del s["devices"][0]["containerEdits"]["mounts"][1]["containerPath"]
        cases.append((s, "mounts/1 must have required property 'containerPath'"))
        s = copy.deepcopy(SPEC)
        del s["cdiVersion"]
        cases.append((s, "must have required property 'cdiVersion'"))
        s = copy.deepcopy(SPEC)
        s["devices"][0]["containerEdits"]["mounts"][0]["options"] = "rbind"
        cases.append((s, "options must be array"))
        s = copy.deepcopy(SPEC)
        s["devices"][0]["containerEdits"]["envs"] = []
        cases.append((s, "cdi: unknown field devices[0].containerEdits.envs"))
        s = copy.deepcopy(SPEC)
        s["devices"][0]["containerEdits"]["env"].append("PHYSPOOL_LEASE")
        cases.append((s, "is not NAME=VALUE"))
        s = copy.deepcopy(SPEC)
        s["kind"] = "physpool-claim"
        cases.append((s, "is not vendor/class"))
        s = copy.deepcopy(SPEC)
        s["devices"].append(copy.deepcopy(s["devices"][0]))
        cases.append((s, "is a duplicate"))
        s = copy.deepcopy(SPEC)
        s["devices"][0]["containerEdits"]["mounts"][1]["containerPath"] = "var/run/x"
        cases.append((s, "is not absolute"))
        cases.append(("{not json", "spec0.json:"))
        for spec, want in cases:
            with self.subTest(want=want):
                code, out = check(spec)
                self.assertEqual(code, 1, out)
                self.assertIn(want, out)
                self.assertNotIn(": valid", out)

    def test_one_line_per_problem(self):
        s = copy.deepcopy(SPEC)
        del s["devices"][0]["containerEdits"]["mounts"][0]["hostPath"]
        del s["devices"][0]["containerEdits"]["mounts"][1]["containerPath"]
        code, out = check(SPEC, s)
        self.assertEqual(code, 1, out)
        self.assertIn("spec0.json: valid", out)
        self.assertEqual(len([ln for ln in out.splitlines() if "spec1.json" in ln]), 2, out)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
