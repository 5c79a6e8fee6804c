#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Checks tests/dra/fake_apiserver.py itself: TLS with its CA (curl, as
libcurl would, and Python's ssl), the bearer token, the contract's calls and
the real server's answers to them, and that a ResourceSlice shaped like the
contract's validates with validate.mjs while a broken one does not.

usage: fake_apiserver_test.py NPM_DIR
  NPM_DIR: where `npm ci` installed tests/deploy/package-lock.json
"""
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_apiserver as fa  # noqa: E402

NPM_DIR = sys.argv[1] if len(sys.argv) > 1 else None
DRIVER = "dma.physpool.io"
NODE = "node1"
SLICES = "/apis/resource.k8s.io/v1/resourceslices"


def contract_slice(node=NODE, generation=1):
    """A ResourceSlice as dra-contract.md describes it."""
    def dev(i, free):
        page = "2097152"
        return {
            "name": f"numa{i}",
            "allowMultipleAllocations": True,
            "attributes": {"numaNode": {"int": i}, "pageSize": {"int": int(page)},
                           "largestFreeRun": {"int": free}, "dmaLimit": {"int": 0},
                           "freeBytes": {"int": free}},
            "capacity": {"memory": {"value": "4294967296",
                                    "requestPolicy": {"default": page,
                                                      "validRange": {"min": page,
                                                                     "step": page}}}},
        }
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": {"name": f"{node}-dma-physpool-io"},
            "spec": {"driver": DRIVER, "nodeName": node,
                     "pool": {"name": node, "generation": generation, "resourceSliceCount": 1},
                     "devices": [dev(0, 4294967296), dev(1, 1 << 30)]}}


class FakeApiServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fake-apiserver-")
        cls.srv = fa.FakeApiServer(cls.tmp).start()
        cls.ctx = ssl.create_default_context(cafile=cls.srv.ca_file)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.tmp)

    def call(self, method, path, body=None, token=None, ctype="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.srv.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + (token or self.srv.token))
        if data is not None:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def test_tls_and_token_with_curl(self):
        curl = shutil.which("curl")
        if not curl:
            self.skipTest("no curl")
        path = "/apis/resource.k8s.io/v1/namespaces/x/resourceclaims/none"
        for host in ["127.0.0.1", "localhost"]:
            out = subprocess.run([curl, "-sS", "--cacert", self.srv.ca_file,
                                  "-H", "Authorization: Bearer " + self.srv.token,
                                  f"https://{host}:{self.srv.port}{path}"],
                                 capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(json.loads(out.stdout)["reason"], "NotFound")
        # Without the CA: the certificate is not trusted.
        out = subprocess.run([curl, "-sS", f"https://127.0.0.1:{self.srv.port}/"],
                             capture_output=True, text=True)
        self.assertNotEqual(out.returncode, 0)

    def test_unauthorized(self):
        code, body = self.call("GET", SLICES, token="wrong")
        self.assertEqual(code, 401)
        self.assertEqual((body["kind"], body["status"], body["reason"], body["code"]),
                         ("Status", "Failure", "Unauthorized", 401))
        req = urllib.request.Request(self.srv.url + SLICES)
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, context=self.ctx, timeout=10)
        self.assertEqual(e.exception.code, 401)

    def test_token_rotation(self):
        old = self.srv.token
        new = self.srv.rotate_token()
        with open(self.srv.token_file) as f:
            self.assertEqual(f.read(), new)
        self.assertEqual(self.call("GET", SLICES, token=old)[0], 200)
        self.assertEqual(self.call("GET", SLICES, token=new)[0], 200)

    def test_claims(self):
        c = self.srv.add_claim(fa.allocated_claim(
            "ns1", "claim1", DRIVER, NODE, [("mem", "numa0", "1Gi")],
            config={"apiVersion": "dma.physpool.io/v1", "kind": "DmaConfig",
                    "alignment": "2Mi"}))
        self.assertTrue(c["metadata"]["uid"])
        code, got = self.call("GET", "/apis/resource.k8s.io/v1/namespaces/ns1/resourceclaims/claim1")
        self.assertEqual(code, 200)
        self.assertEqual(got, c)
        res = got["status"]["allocation"]["devices"]["results"][0]
        self.assertEqual(res["consumedCapacity"]["memory"], "1Gi")
        code, got = self.call("GET", "/apis/resource.k8s.io/v1/namespaces/ns2/resourceclaims/claim1")
        self.assertEqual(code, 404)
        self.assertEqual(got["reason"], "NotFound")
        self.assertEqual(got["details"], {"name": "claim1", "group": "resource.k8s.io",
                                          "kind": "resourceclaims"})
        # A claim deleted and made again under its name has another uid.
        self.srv.delete_claim("ns1", "claim1")
        c2 = self.srv.add_claim(fa.allocated_claim("ns1", "claim1", DRIVER, NODE,
                                                   [("mem", "numa0", "1Gi")]))
        self.assertNotEqual(c2["metadata"]["uid"], c["metadata"]["uid"])
        if NPM_DIR:
            code, out = fa.validate_objects([c, c2], NPM_DIR)
            self.assertEqual(code, 0, out)

    def test_slice_lifecycle(self):
        self.srv.clear()
        s = contract_slice(node="lc")
        name = s["metadata"]["name"]
        code, created = self.call("POST", SLICES, s)
        self.assertEqual(code, 201, created)
        meta = created["metadata"]
        self.assertTrue(meta["uid"] and meta["creationTimestamp"] and meta["resourceVersion"])
        self.assertEqual(meta["generation"], 1)
        code, again = self.call("POST", SLICES, s)
        self.assertEqual((code, again["reason"]), (409, "AlreadyExists"))
        # Create with a resourceVersion: refused as the real server does.
        code, bad = self.call("POST", SLICES, created)
        self.assertEqual(code, 500)
        # Update with the current resourceVersion: bumped.
        upd = json.loads(json.dumps(created))
        upd["spec"]["pool"]["generation"] = 2
        code, updated = self.call("PUT", f"{SLICES}/{name}", upd)
        self.assertEqual(code, 200, updated)
        self.assertGreater(int(updated["metadata"]["resourceVersion"]), int(meta["resourceVersion"]))
        self.assertEqual(updated["metadata"]["uid"], meta["uid"])
        self.assertEqual(updated["metadata"]["generation"], 2)
        # The same again: stale resourceVersion.
        code, conflict = self.call("PUT", f"{SLICES}/{name}", upd)
        self.assertEqual((code, conflict["reason"], conflict["code"]), (409, "Conflict", 409))
        self.assertIn("the object has been modified", conflict["message"])
        # Name mismatch, missing object, immutable field.
        self.assertEqual(self.call("PUT", f"{SLICES}/other", updated)[0], 400)
        ghost = json.loads(json.dumps(updated))
        ghost["metadata"] = {"name": "ghost"}
        self.assertEqual(self.call("PUT", f"{SLICES}/ghost", ghost)[0], 404)
        moved = json.loads(json.dumps(updated))
        moved["spec"]["nodeName"] = "elsewhere"
        code, inv = self.call("PUT", f"{SLICES}/{name}", moved)
        self.assertEqual((code, inv["reason"]), (422, "Invalid"))
        # A no-op update keeps the resourceVersion.
        code, same = self.call("PUT", f"{SLICES}/{name}", updated)
        self.assertEqual(same["metadata"]["resourceVersion"], updated["metadata"]["resourceVersion"])
        # Wrong media type.
        self.assertEqual(self.call("PUT", f"{SLICES}/{name}", updated, ctype="text/plain")[0], 415)
        # Delete, then 404.
        code, st = self.call("DELETE", f"{SLICES}/{name}")
        self.assertEqual((code, st["status"]), (200, "Success"))
        self.assertNotIn(name, self.srv.slices())
        code, st = self.call("DELETE", f"{SLICES}/{name}")
        self.assertEqual((code, st["reason"]), (404, "NotFound"))
        methods = [(w["method"], w["code"]) for w in self.srv.slice_writes()]
        self.assertEqual(methods, [("POST", 201), ("POST", 409), ("POST", 500), ("PUT", 200),
                                   ("PUT", 409), ("PUT", 400), ("PUT", 404), ("PUT", 422),
                                   ("PUT", 200), ("PUT", 415), ("DELETE", 200),
                                   ("DELETE", 404)])

    def test_invalid_slice(self):
        s = contract_slice(node="inv")
        s["spec"]["devices"][1]["name"] = "numa0"
        s["spec"]["pool"]["resourceSliceCount"] = 0
        s["spec"]["devices"][0].setdefault("attributes", {}).update(
            {"Resource_Kubernetes.io/numaNode": {"int": 0}, "state": {"string": "x" * 65}})
        code, st = self.call("POST", SLICES, s)
        self.assertEqual((code, st["reason"]), (422, "Invalid"))
        self.assertIn("Duplicate value", st["message"])
        self.assertIn("resourceSliceCount", st["message"])
        self.assertIn("the domain must be a DNS subdomain", st["message"])
        self.assertIn("may not be more than 64 bytes", st["message"])
        # A qualified standard attribute is fine.
        s = contract_slice(node="inv2")
        s["spec"]["devices"][0].setdefault("attributes", {})[
            "resource.kubernetes.io/numaNode"] = {"int": 0}
        code, st = self.call("POST", SLICES, s)
        self.assertEqual(code, 201, st)

    def test_list_field_selector(self):
        for node in ["fa", "fb"]:
            self.assertEqual(self.call("POST", SLICES, contract_slice(node=node))[0], 201)
        other = contract_slice(node="fa")
        other["metadata"]["name"] = "fa-other"
        other["spec"]["driver"] = "gpu.example.com"
        self.assertEqual(self.call("POST", SLICES, other)[0], 201)
        q = "?fieldSelector=spec.nodeName%3Dfa%2Cspec.driver%3Ddma.physpool.io"
        code, lst = self.call("GET", SLICES + q)
        self.assertEqual(code, 200)
        self.assertEqual((lst["kind"], lst["apiVersion"]), ("ResourceSliceList", "resource.k8s.io/v1"))
        self.assertTrue(lst["metadata"]["resourceVersion"])
        self.assertEqual([i["metadata"]["name"] for i in lst["items"]], ["fa-dma-physpool-io"])
        self.assertNotIn("kind", lst["items"][0])
        code, lst = self.call("GET", SLICES + "?fieldSelector=spec.nodeName%3Dfa")
        self.assertEqual(len(lst["items"]), 2)
        code, lst = self.call("GET", SLICES + "?fieldSelector=spec.driver!%3Ddma.physpool.io")
        self.assertEqual([i["metadata"]["name"] for i in lst["items"]], ["fa-other"])
        code, st = self.call("GET", SLICES + "?fieldSelector=spec.pool.generation%3D1")
        self.assertEqual((code, st["reason"]), (400, "BadRequest"))
        self.assertIn("field label not supported", st["message"])

    def test_fault_injection(self):
        self.srv.inject("GET", r"/resourceclaims/", 503, times=1, delay=0.2)
        t = time.monotonic()
        code, st = self.call("GET", "/apis/resource.k8s.io/v1/namespaces/a/resourceclaims/b")
        self.assertGreaterEqual(time.monotonic() - t, 0.2)
        self.assertEqual((code, st["reason"]), (503, "ServiceUnavailable"))
        code, _ = self.call("GET", "/apis/resource.k8s.io/v1/namespaces/a/resourceclaims/b")
        self.assertEqual(code, 404)

    def test_unknown_path(self):
        code, st = self.call("GET", "/apis/resource.k8s.io/v1beta1/resourceslices")
        self.assertEqual((code, st["reason"]), (404, "NotFound"))

    @unittest.skipUnless(NPM_DIR, "no NPM_DIR")
    def test_validation_of_writes(self):
        srv = fa.FakeApiServer(os.path.join(self.tmp, "v")).start()
        try:
            ctx = ssl.create_default_context(cafile=srv.ca_file)
            for body in [contract_slice(node="good")]:
                req = urllib.request.Request(srv.url + SLICES, json.dumps(body).encode(),
                                             {"Authorization": "Bearer " + srv.token,
                                              "Content-Type": "application/json"}, method="POST")
                urllib.request.urlopen(req, context=ctx, timeout=10).close()
            self.assertIn("ResourceSlice/good-dma-physpool-io: valid",
                          srv.assert_writes_valid(NPM_DIR))
            bad = contract_slice(node="bad")
            bad["spec"]["devices"][0]["allowMultipleAllocation"] = True   # typo
            bad["spec"]["devices"][0]["capacity"]["memory"]["requestPolicy"]["validRange"] = {
                "step": "2Mi"}                                               # min required
            req = urllib.request.Request(srv.url + SLICES, json.dumps(bad).encode(),
                                         {"Authorization": "Bearer " + srv.token,
                                          "Content-Type": "application/json"}, method="POST")
            urllib.request.urlopen(req, context=ctx, timeout=10).close()
            code, out = srv.validate_writes(NPM_DIR)
            self.assertEqual(code, 1, out)
            self.assertIn("unknown field spec.devices[0].allowMultipleAllocation", out)
            self.assertIn("min", out)
        finally:
            srv.stop()

    def test_standalone(self):
        d = os.path.join(self.tmp, "cli")
        os.makedirs(os.path.join(d, "claims"))
        with open(os.path.join(d, "claims", "c.json"), "w") as f:
            json.dump(fa.allocated_claim("ns", "c", DRIVER, NODE, [("r", "pool", "4Mi")],
                                         uid="11111111-2222-3333-4444-555555555555"), f)
        p = subprocess.Popen([sys.executable, fa.__file__, "--dir", d, "--port", "0"],
                             stdout=subprocess.PIPE, text=True)
        try:
            port = int(p.stdout.readline())
            with open(os.path.join(d, "token")) as f:
                token = f.read()
            ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.crt"))

            def call(method, path, body=None):
                req = urllib.request.Request(
                    f"https://127.0.0.1:{port}{path}",
                    json.dumps(body).encode() if body else None,
                    {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
                    method=method)
                try:
                    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                        return r.status, json.load(r)
                except urllib.error.HTTPError as e:
                    return e.code, json.load(e)
            code, c = call("GET", "/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/c")
            self.assertEqual((code, c["metadata"]["uid"]),
                             (200, "11111111-2222-3333-4444-555555555555"))
            self.assertEqual(call("POST", SLICES, contract_slice(node="cli"))[0], 201)
            self.assertTrue(os.path.exists(os.path.join(d, "slices", "cli-dma-physpool-io.json")))
            os.unlink(os.path.join(d, "claims", "c.json"))
            self.assertEqual(call("GET", "/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/c")[0],
                             404)
        finally:
            p.terminate()
            p.wait(10)
            p.stdout.close()
        with open(os.path.join(d, "writes.jsonl")) as f:
            self.assertEqual(len(f.readlines()), 1)
        if NPM_DIR:
            out = subprocess.run([sys.executable, fa.__file__, "--dir", d, "--validate", NPM_DIR],
                                 capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
