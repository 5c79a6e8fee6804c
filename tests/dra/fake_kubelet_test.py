#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Checks tests/dra/fake_kubelet.py itself against a toy DRA plugin written
here in Python (generic grpc handlers): registration as kubelet does it,
the wire names of both DRA service versions, kubelet's deadlines, a plugin
that registers late or wrongly, and re-registration after a restart.

usage: fake_kubelet_test.py
"""
import os
import shutil
import sys
import tempfile
import threading
import time
import unittest
from concurrent import futures

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_kubelet as fk  # noqa: E402

DRIVER = "dma.physpool.io"


class ToyPlugin:
    """A DRA plugin: registration socket + DRA service, both versions."""

    def __init__(self, root, info_type="DRAPlugin", versions=("v1.DRAPlugin", "v1beta1.DRAPlugin")):
        self.pb = fk.load_protos()
        self.reg = os.path.join(root, "registry", f"{DRIVER}-reg.sock")
        self.endpoint = os.path.join(root, "plugins", DRIVER, "dra.sock")
        os.makedirs(os.path.dirname(self.reg), exist_ok=True)
        os.makedirs(os.path.dirname(self.endpoint), exist_ok=True)
        self.info_type, self.versions = info_type, list(versions)
        self.notified = []
        self.deadlines = []
        self.seen = []        # (service, method, [(ns, uid, name)])
        self.prepared = set()
        self.servers = []

    def start(self):
        reg = self.pb["registration"]

        def get_info(req, ctx):
            self.deadlines.append(("GetInfo", ctx.time_remaining()))
            return reg.PluginInfo(type=self.info_type, name=DRIVER, endpoint=self.endpoint,
                                  supported_versions=self.versions)

        def notify(req, ctx):
            self.notified.append((req.plugin_registered, req.error))
            return reg.RegistrationStatusResponse()

        rs = grpc.server(futures.ThreadPoolExecutor(4))
        rs.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(fk.REGISTRATION, {
            "GetInfo": grpc.unary_unary_rpc_method_handler(
                get_info, reg.InfoRequest.FromString, fk._ser),
            "NotifyRegistrationStatus": grpc.unary_unary_rpc_method_handler(
                notify, reg.RegistrationStatus.FromString, fk._ser)})])
        ds = grpc.server(futures.ThreadPoolExecutor(4))
        for version, service in fk.SERVICES.items():
            pb = self.pb[version]

            def prepare(req, ctx, service=service, pb=pb):
                self.deadlines.append(("NodePrepareResources", ctx.time_remaining()))
                self.seen.append((service, "prepare",
                                  [(c.namespace, c.uid, c.name) for c in req.claims]))
                resp = pb.NodePrepareResourcesResponse()
                for c in req.claims:
                    r = resp.claims[c.uid]
                    if c.name == "bad":
                        r.error = "no such claim"
                        continue
                    self.prepared.add(c.uid)
                    r.devices.add(request_names=["mem"], pool_name="node1", device_name="numa0",
                                  cdi_device_ids=[f"{DRIVER}/claim={c.uid}"])
                return resp

            def unprepare(req, ctx, service=service, pb=pb):
                self.deadlines.append(("NodeUnprepareResources", ctx.time_remaining()))
                self.seen.append((service, "unprepare",
                                  [(c.namespace, c.uid, c.name) for c in req.claims]))
                resp = pb.NodeUnprepareResourcesResponse()
                for c in req.claims:
                    self.prepared.discard(c.uid)
                    resp.claims[c.uid].error = ""
                return resp

            ds.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, {
                "NodePrepareResources": grpc.unary_unary_rpc_method_handler(
                    prepare, pb.NodePrepareResourcesRequest.FromString, fk._ser),
                "NodeUnprepareResources": grpc.unary_unary_rpc_method_handler(
                    unprepare, pb.NodeUnprepareResourcesRequest.FromString, fk._ser)})])
        # As a plugin should: the DRA service first, then the registration
        # socket (kubelet may call at once).
        ds.add_insecure_port("unix:" + self.endpoint)
        ds.start()
        rs.add_insecure_port("unix:" + self.reg)
        rs.start()
        self.servers = [rs, ds]
        return self

    def stop(self):
        for s in self.servers:
            s.stop(0).wait()
        for p in [self.reg, self.endpoint]:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


class FakeKubeletTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="fk-")
        self.registry = os.path.join(self.root, "registry")
        self.plugins = []

    def tearDown(self):
        for p in self.plugins:
            p.stop()
        shutil.rmtree(self.root)

    def plugin(self, **kw):
        p = ToyPlugin(self.root, **kw)
        self.plugins.append(p)
        return p

    def test_register_prepare_unprepare_both_versions(self):
        p = self.plugin()
        # The plugin comes up after the kubelet starts waiting.
        threading.Timer(0.5, p.start).start()
        k = fk.FakeKubelet(self.registry, DRIVER, expected_endpoint=p.endpoint)
        info = k.register(timeout=10)
        self.assertEqual(info.type, "DRAPlugin")
        self.assertEqual(p.notified, [(True, "")])
        for version in ["v1", "v1beta1"]:
            with self.subTest(version=version):
                claims = [("ns", f"uid-{version}", "c"), {"namespace": "ns", "uid": "uid-bad",
                                                          "name": "bad"}]
                resp = k.prepare(claims, version=version)
                self.assertEqual(resp[f"uid-{version}"]["error"], "")
                self.assertEqual(resp[f"uid-{version}"]["devices"][0]["cdi_device_ids"],
                                 [f"{DRIVER}/claim=uid-{version}"])
                self.assertEqual(resp["uid-bad"]["error"], "no such claim")
                self.assertEqual(p.seen[-1][0], fk.SERVICES[version])
                self.assertIn(f"uid-{version}", p.prepared)
                obj = {"metadata": {"namespace": "ns", "uid": f"uid-{version}", "name": "c"}}
                self.assertEqual(k.unprepare([obj], version=version),
                                 {f"uid-{version}": {"error": ""}})
                self.assertNotIn(f"uid-{version}", p.prepared)
        self.assertEqual(k.prepare([]), {})
        # kubelet's deadlines reach the plugin.
        dl = dict((m, t) for m, t in p.deadlines)
        self.assertLessEqual(dl["GetInfo"], 1.2)
        self.assertGreater(dl["NodePrepareResources"], 40)
        self.assertLessEqual(dl["NodePrepareResources"], 45.5)
        k.close()

    def test_wrong_type_is_refused_and_told(self):
        p = self.plugin(info_type="CSIPlugin").start()
        k = fk.FakeKubelet(self.registry, DRIVER)
        with self.assertRaises(fk.RegistrationError) as e:
            k.register(timeout=5)
        self.assertIn("CSIPlugin", str(e.exception))
        self.assertEqual(p.notified[0][0], False)
        self.assertIn("DRAPlugin", p.notified[0][1])

    def test_versions_checked(self):
        self.plugin(versions=["v1beta1.DRAPlugin"]).start()
        with self.assertRaises(fk.RegistrationError):
            fk.FakeKubelet(self.registry, DRIVER).register(timeout=5)
        # Accepted when the test expects only that.
        fk.FakeKubelet(self.registry, DRIVER, expected_versions=None).register(timeout=5)

    def test_timeout_when_no_plugin(self):
        k = fk.FakeKubelet(self.registry, DRIVER)
        t = time.monotonic()
        with self.assertRaises(TimeoutError):
            k.register(timeout=0.5)
        self.assertLess(time.monotonic() - t, 3)

    def test_reregister_after_restart(self):
        p = self.plugin().start()
        k = fk.FakeKubelet(self.registry, DRIVER)
        k.register(timeout=5)
        self.assertEqual(k.prepare([("ns", "u1", "c")])["u1"]["error"], "")
        p.stop()
        self.plugins.remove(p)
        with self.assertRaises(Exception):
            k.prepare([("ns", "u2", "c")], timeout=1)
        p2 = self.plugin()
        threading.Timer(0.3, p2.start).start()
        k.reregister(timeout=10)
        self.assertEqual(p2.notified, [(True, "")])
        self.assertEqual(k.prepare([("ns", "u3", "c")])["u3"]["error"], "")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
