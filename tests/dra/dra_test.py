#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""physpool-dra as kubelet drives it, against the real physpoold.

A fake kubelet (fake_kubelet.py: the registration socket, GetInfo,
NotifyRegistrationStatus, then NodePrepareResources/NodeUnprepareResources
with kubelet's 45 s deadline) and a loopback HTTPS stand-in for the API
server (fake_apiserver.py: a generated CA, bearer tokens, ResourceClaims,
recorded ResourceSlice writes) around the real plugin binary and a real
physpoold (sim source, two NUMA nodes). Every recorded object is checked
against the Kubernetes schema of its kind, every CDI spec against the CDI
spec's JSON schema. The tenant side runs as a runtime would start it: the
CDI spec's mounts applied in a private mount namespace (unshare -m) and its
environment only.

usage: dra_test.py PHYSPOOLD PHYSPOOL_DRA PHYSPOOLCTL DRA_TENANT SRC NPM_DIR PYGEN
"""
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fake_apiserver  # noqa: E402
import fake_kubelet  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(HERE), "server"))
import physpool_testlib  # noqa: E402

PHYSPOOLD, DRA, CTL, TENANT, SRC, NPM, PYGEN = (None,) * 7
DRIVER = "dma.physpool.io"
NODE = "node-1"
MIB = 1 << 20
SEG = 64 * MIB
TOKENS = {"dra": "dra-token-0123456789", "admin": "admin-token-0123456789",
          "other": "other-token-0123456789"}
PREPARE_STEPS = ["prepare-recorded", "prepare-allocated", "prepare-cdi-written",
                 "prepare-committed"]
UNPREPARE_STEPS = ["unprepare-recorded", "unprepare-released", "unprepare-cdi-removed",
                   "unprepare-done"]
CONTAINER_CLAIM_DIR = "/var/run/physpool-claim"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def wait_for(pred, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Env:
    """One node: physpoold, the API server stand-in, the plugin, kubelet."""

    def __init__(self, test):
        self.test = test
        self.dir = tempfile.mkdtemp(prefix="dra-test-")
        self.run = os.path.join(self.dir, "run")
        self.state = os.path.join(self.dir, "state")
        self.plugin_dir = os.path.join(self.dir, "kubelet/plugins", DRIVER)
        self.registrar = os.path.join(self.dir, "kubelet/plugins_registry")
        self.cdi = os.path.join(self.dir, "cdi")
        for d in (self.run, self.state):
            os.makedirs(d)
        self.sock = os.path.join(self.run, "physpool.sock")
        # As in the dra overlay: not in the socket directory, which the
        # claims' CDI specs mount into the pods.
        self.sim = os.path.join(self.dir, "sim")
        self.token_files = {}
        self.files = []
        for t, tok in TOKENS.items():
            p = os.path.join(self.dir, f"{t}.token")
            with open(p, "w") as f:
                f.write(tok + "\n")
            self.token_files[t] = p
        self.config = os.path.join(self.dir, "physpoold.yaml")
        tenants = "".join(
            f"  - name: {t}\n    token_sha256: [{sha(tok)}]\n    roles: "
            f"[{'tenant, admin' if t == 'admin' else 'tenant'}]\n"
            for t, tok in TOKENS.items())
        with open(self.config, "w") as f:
            f.write(f"""listen:
  unix: {self.sock}
  fd_socket: {self.sock}.fds
  tcp: ""
metrics:
  listen: "127.0.0.1:0"
source:
  type: sim
  sim:
    dir: {self.sim}
    page_size: 4096
    segments:
      - {{bytes: {SEG}, freelist: 0, numa: 0}}
      - {{bytes: {SEG}, freelist: 1, numa: 1}}
store:
  path: {self.state}/leases.db
leases:
  max_ttl_seconds: 3600
tenants:
{tenants}implicit_tenant: false
""")
        self.api = fake_apiserver.FakeApiServer(os.path.join(self.dir, "api")).start()
        self.node = self.api.add_node(NODE)
        self.daemon = None
        self.plugin = None
        self.plugin_logs = []
        self.channel = None
        self.pb = physpool_testlib.load_protos(PYGEN)
        self.kubelet = fake_kubelet.FakeKubelet(self.registrar, DRIVER,
                                                expected_endpoint=os.path.join(
                                                    self.plugin_dir, "dra.sock"))
        self.start_daemon()

    # -- processes -------------------------------------------------------------
    def start_daemon(self):
        ready = os.path.join(self.dir, "ready.json")
        if os.path.exists(ready):
            os.unlink(ready)
        self.daemon_log = self.open_log(os.path.join(self.dir, "physpoold.log"))
        self.daemon = subprocess.Popen([PHYSPOOLD, "--config", self.config, "--ready-file", ready],
                                       stdout=self.daemon_log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(ready) or self.daemon.poll() is not None,
                 what="physpoold ready")
        if self.daemon.poll() is not None:
            raise AssertionError("physpoold exited: " + self.log("physpoold.log"))
        self.channel = physpool_testlib.channel("unix:" + self.sock)

    def kill_daemon(self):
        self.daemon.send_signal(signal.SIGKILL)
        self.daemon.wait()
        self.channel.close()

    def start_plugin(self, crash_at=None, extra=()):
        env = {k: v for k, v in os.environ.items() if k != "PHYSPOOL_DRA_CRASH_AT"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        if crash_at:
            env["PHYSPOOL_DRA_CRASH_AT"] = crash_at
        log = os.path.join(self.dir, f"plugin-{len(self.plugin_logs)}.log")
        # A killed plugin leaves its socket; the new one replaces it.
        if os.path.exists(self.kubelet.reg_socket):
            os.unlink(self.kubelet.reg_socket)
        self.plugin_logs.append(log)
        self.plugin = subprocess.Popen(
            [DRA, f"--driver-name={DRIVER}", f"--node-name={NODE}",
             f"--physpool-endpoint=unix:{self.sock}",
             f"--physpool-token-file={self.token_files['dra']}",
             f"--socket-dir={self.run}", f"--registrar-dir={self.registrar}",
             f"--plugin-dir={self.plugin_dir}", f"--cdi-dir={self.cdi}",
             f"--kube-api={self.api.url}", f"--kube-token-file={self.api.token_file}",
             f"--kube-ca-file={self.api.ca_file}", "--publish-interval=1",
             "--cleanup-interval=1", "--lease-ttl=60", *extra],
            env=env, stdout=self.open_log(log), stderr=subprocess.STDOUT)
        try:
            self.kubelet.register(timeout=30, proc=self.plugin)
        except Exception as e:
            raise AssertionError(f"{e}; plugin log:\n{self.plugin_log()}") from e
        return self.plugin

    def open_log(self, path):
        f = open(path, "a")
        self.files.append(f)
        return f

    def stop_plugin(self, sig=signal.SIGTERM):
        if self.plugin and self.plugin.poll() is None:
            self.plugin.send_signal(sig)
            self.plugin.wait(timeout=20)

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name)) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def plugin_log(self):
        return "".join(self.log(os.path.basename(p)) for p in self.plugin_logs)

    def close(self):
        self.kubelet.close()
        self.stop_plugin(signal.SIGKILL)
        if self.daemon and self.daemon.poll() is None:
            self.daemon.terminate()
            self.daemon.wait(timeout=20)
        self.api.stop()
        for f in self.files:
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- physpoold -------------------------------------------------------------
    def call(self, service, method, req, token="admin", resp=None):
        resp_cls = resp or getattr(self.pb, method + "Response")
        fn = self.channel.unary_unary(f"/physpool.v1.{service}/{method}",
                                      request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=resp_cls.FromString)
        return fn(req, timeout=10, metadata=[("authorization", "Bearer " + TOKENS[token])])

    def leases(self, tenant="dra"):
        """{lease id: Lease} of a tenant (Admin.ListLeases)."""
        out = {}
        req = self.pb.AdminListLeasesRequest(tenant=tenant)
        while True:
            r = self.call("Admin", "ListLeases", req, resp=self.pb.ListLeasesResponse)
            for lease in r.leases:
                out[lease.id] = lease
            if not r.next_page_token:
                return out
            req.page_token = r.next_page_token

    def claim_leases(self, uid):
        return {i: l for i, l in self.leases().items() if l.label.startswith(f"dra-claim={uid} ")}

    def pool(self):
        return self.call("Pool", "GetPoolInfo", self.pb.GetPoolInfoRequest())

    def read_backing(self, lease):
        """The bytes of an (admin-viewed) lease's runs in the segment files:
        what the device sees (the sim source's stand-in for DMA)."""
        data = b""
        for r in lease.runs:
            with open(r.backing_path, "rb") as f:
                f.seek(r.backing_offset)
                data += f.read(r.length)
        return data

    def dma_write(self, lease, byte):
        """A device's DMA into the lease (sim: the segment files)."""
        for r in lease.runs:
            with open(r.backing_path, "r+b") as f:
                f.seek(r.backing_offset)
                f.write(bytes([byte]) * r.length)

    def read_view(self, lease_id):
        """What the tenant's CPU mapping holds: the sim source's per-lease
        view file (docs/vfio.md, "Per-lease mappings")."""
        with open(os.path.join(self.sim, f"lease-{lease_id}.view"), "rb") as f:
            return f.read()

    # -- the tenant side -------------------------------------------------------
    def cdi_spec(self, uid):
        with open(os.path.join(self.cdi, f"physpool-{uid}.json")) as f:
            return json.load(f)

    def run_tenant(self, uid, *args):
        """The claim's container process: the CDI spec's mounts in a private
        mount namespace and its environment, nothing else."""
        spec = self.cdi_spec(uid)
        edits = spec["devices"][0]["containerEdits"]
        env = {"PATH": "/usr/bin:/bin"}
        for e in edits["env"]:
            k, v = e.split("=", 1)
            env[k] = v
        script = ["set -e"]
        made = []
        for m in edits["mounts"]:
            c = m["containerPath"]
            if not os.path.exists(c):
                made.append(c)
            script.append(f"mkdir -p '{c}'")
            script.append(f"mount --rbind '{m['hostPath']}' '{c}'")
            if "ro" in m.get("options", []):
                script.append(f"mount -o remount,bind,ro '{c}'")
        script.append('exec "$@"')
        try:
            return subprocess.run(["unshare", "-m", "sh", "-c", "\n".join(script), "sh",
                                   TENANT, *args], env=env, capture_output=True, text=True,
                                  timeout=60)
        finally:
            for c in reversed(made):
                try:
                    os.rmdir(c)
                except OSError:
                    pass

    # -- claims ----------------------------------------------------------------
    def add_claim(self, name, results, config=None, ns="ml"):
        c = fake_apiserver.allocated_claim(ns, name, DRIVER, NODE, results, config=config)
        c = self.api.add_claim(c)
        return (ns, c["metadata"]["uid"], name)

    def check_cdi(self, uid):
        path = os.path.join(self.cdi, f"physpool-{uid}.json")
        out = subprocess.run(["node", os.path.join(NPM, "validate_cdi.mjs"), path],
                             capture_output=True, text=True)
        self.test.assertEqual(out.returncode, 0, f"CDI spec invalid: {out.stdout}{out.stderr}")


class DraTest(unittest.TestCase):
    calls = set()  # (method, path) of every API-server request, all tests
    ran = set()    # the tests that ran

    @classmethod
    def tearDownClass(cls):
        # The overlay's ClusterRole grants exactly what the plugin called.
        sys.path.insert(0, os.path.join(SRC, "tests/deploy"))
        import yaml
        from rbac_verbs import rbac_verb
        with open(os.path.join(SRC, "deploy/k8s/overlays/dra/rbac.yaml")) as f:
            role = next(d for d in yaml.safe_load_all(f) if d["kind"] == "ClusterRole")
        granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
                   for r in rule["resources"] for v in rule["verbs"]}
        used = {rbac_verb(m, p) for m, p in cls.calls}
        # Every verb used is granted; with every test run, every verb
        # granted was used.
        everything = cls.ran == set(unittest.TestLoader().getTestCaseNames(cls))
        if not used <= granted or (everything and used != granted):
            raise AssertionError(f"the plugin used {sorted(used)}; the overlay's "
                                 f"ClusterRole grants {sorted(granted)}")

    def setUp(self):
        self.env = Env(self)

    def tearDown(self):
        if os.environ.get("DRA_TEST_LOGS"):
            print("--- plugin log:\n" + self.env.plugin_log(), file=sys.stderr)
        DraTest.calls |= {(r["method"], r["path"]) for r in self.env.api.requests}
        DraTest.ran.add(self._testMethodName)
        try:
            # Every object the plugin wrote, against its kind's schema.
            self.env.api.assert_writes_valid(NPM)
        finally:
            self.env.close()

    def prepare_ok(self, claim, version="v1"):
        r = self.env.kubelet.prepare([claim], version=version)
        self.assertIn(claim[1], r)
        self.assertEqual(r[claim[1]]["error"], "", self.env.plugin_log())
        return r[claim[1]]["devices"]

    def test_registers_and_publishes_the_pool(self):
        e = self.env
        # A slice of this node and driver that an earlier run left under
        # another name: the plugin deletes it.
        e.api.put_slice({"metadata": {"name": "stale-slice"},
                         "spec": {"driver": DRIVER, "nodeName": NODE,
                                  "pool": {"name": NODE, "generation": 1,
                                           "resourceSliceCount": 1}, "devices": []}})
        e.start_plugin()
        info = e.kubelet.get_info()
        self.assertEqual(info.type, "DRAPlugin")
        self.assertEqual(list(info.supported_versions), ["v1.DRAPlugin", "v1beta1.DRAPlugin"])
        slices = wait_for(lambda: "stale-slice" not in e.api.slices() and e.api.slices(),
                          what="the plugin's ResourceSlice, the stale one gone")
        self.assertEqual(len(slices), 1)
        s = next(iter(slices.values()))
        self.assertEqual(s["metadata"]["ownerReferences"],
                         [{"apiVersion": "v1", "kind": "Node", "name": NODE,
                           "uid": e.node["metadata"]["uid"], "controller": True}])
        self.assertEqual(s["spec"]["driver"], DRIVER)
        self.assertEqual(s["spec"]["nodeName"], NODE)
        self.assertEqual(s["spec"]["pool"]["name"], NODE)
        devs = {d["name"]: d for d in s["spec"]["devices"]}
        self.assertEqual(set(devs), {"numa0", "numa1"})
        for n, d in devs.items():
            self.assertTrue(d["allowMultipleAllocations"])
            self.assertEqual(d["capacity"]["memory"]["value"], "64Mi")
            self.assertEqual(d["capacity"]["memory"]["requestPolicy"]["validRange"]["step"], "4096")
            self.assertEqual(d["attributes"]["numaNode"]["int"], int(n[-1]))
            # The standard attribute (k8s.io/dynamic-resource-allocation/
            # deviceattribute): an int, the segments' node, for a claim's
            # matchAttribute across drivers.
            std = d["attributes"]["resource.kubernetes.io/numaNode"]
            self.assertEqual(std, {"int": int(n[-1])})
            self.assertIs(type(std["int"]), int)
            self.assertEqual(d["attributes"]["schedulable"], {"bool": True})
            self.assertEqual(d["attributes"]["state"], {"string": "Serving"})
            self.assertEqual(d["attributes"]["pageSize"]["int"], 4096)
            self.assertEqual(d["attributes"]["largestFreeRun"]["int"], SEG)
        # Kept up to date: a drained segment leaves the capacity; another
        # tenant's lease is not the scheduler's to hand out.
        gen = s["spec"]["pool"]["generation"]
        e.call("Admin", "DrainSegment", e.pb.SegmentRequest(segment_id=1),
               resp=e.pb.SegmentResponse)
        other = e.call("Pool", "Allocate", e.pb.AllocateRequest(bytes=8 * MIB, numa_node=0,
                                                                 numa_strict=True, ttl_seconds=600),
                       token="other").lease

        def updated():
            d = {x["name"]: x for x in next(iter(e.api.slices().values()))["spec"]["devices"]}
            return d if d["numa1"]["capacity"]["memory"]["value"] == "0" and \
                d["numa0"]["capacity"]["memory"]["value"] == "56Mi" else None
        wait_for(updated, what="the slice to follow the drain and the other tenant's lease")
        s2 = next(iter(e.api.slices().values()))
        self.assertGreater(s2["spec"]["pool"]["generation"], gen)
        # Every segment of node 1 drains: its device says so and cannot be
        # allocated (capacity 0); node 0 is as it was.
        d2 = {x["name"]: x for x in s2["spec"]["devices"]}
        self.assertEqual(d2["numa1"]["attributes"]["schedulable"], {"bool": False})
        self.assertEqual(d2["numa1"]["attributes"]["state"], {"string": "Draining"})
        self.assertEqual(d2["numa1"]["attributes"]["resource.kubernetes.io/numaNode"],
                         {"int": 1})
        self.assertEqual(d2["numa0"]["attributes"]["schedulable"], {"bool": True})
        self.assertEqual(d2["numa0"]["attributes"]["state"], {"string": "Serving"})
        e.call("Pool", "Release", e.pb.ReleaseRequest(lease_id=other.id), token="other")
        e.call("Admin", "UndrainSegment", e.pb.SegmentRequest(segment_id=1),
               resp=e.pb.SegmentResponse)
        wait_for(lambda: all(x["capacity"]["memory"]["value"] == "64Mi" and
                             x["attributes"]["schedulable"] == {"bool": True} and
                             x["attributes"]["state"] == {"string": "Serving"} for x in
                             next(iter(e.api.slices().values()))["spec"]["devices"]),
                 what="the capacity back, schedulable again")
        # A segment added at run time, then removed.
        added = e.call("Admin", "AddSegment",
                       e.pb.AddSegmentRequest(bytes=16 * MIB, freelist=2, numa_node=1),
                       resp=e.pb.SegmentResponse).segment

        def numa1(value):
            d = {x["name"]: x for x in next(iter(e.api.slices().values()))["spec"]["devices"]}
            return d["numa1"]["capacity"]["memory"]["value"] == value
        wait_for(lambda: numa1("80Mi"), what="the added segment in the slice")
        e.call("Admin", "DrainSegment", e.pb.SegmentRequest(segment_id=added.id),
               resp=e.pb.SegmentResponse)
        # One of node 1's two segments draining: the device stays
        # schedulable, without that segment's bytes.
        wait_for(lambda: numa1("64Mi"), what="the draining segment out of the capacity")
        d = {x["name"]: x for x in next(iter(e.api.slices().values()))["spec"]["devices"]}
        self.assertEqual(d["numa1"]["attributes"]["schedulable"], {"bool": True})
        self.assertEqual(d["numa1"]["attributes"]["state"], {"string": "Serving"})
        e.call("Admin", "RemoveSegment", e.pb.SegmentRequest(segment_id=added.id),
               resp=e.pb.RemoveSegmentResponse)
        wait_for(lambda: numa1("64Mi"), what="the removed segment gone from the slice")
        # A slice deleted behind its back comes back.
        name = next(iter(e.api.slices()))
        gen = e.api.slices()[name]["spec"]["pool"]["generation"]
        with e.api.lock:
            del e.api._slices[name]
        back = wait_for(lambda: e.api.slices().get(name), what="the slice re-created")
        self.assertGreaterEqual(back["spec"]["pool"]["generation"], gen)
        # A restarted plugin adopts its slice (an update, not a second one).
        e.stop_plugin()
        e.start_plugin()
        time.sleep(1.5)
        self.assertEqual(len(e.api.slices()), 1)
        self.assertTrue(e.api.slice_writes("PUT"))

    def test_a_daemon_not_serving_is_published_as_unschedulable(self):
        e = self.env
        e.start_plugin()

        def devices():
            slices = e.api.slices()
            if len(slices) != 1:
                return {}
            return {x["name"]: x for x in next(iter(slices.values()))["spec"]["devices"]}

        def all_are(capacity, schedulable, state):
            d = devices()
            return set(d) == {"numa0", "numa1"} and all(
                x["capacity"]["memory"]["value"] == capacity and
                x["attributes"]["schedulable"] == {"bool": schedulable} and
                x["attributes"]["state"] == {"string": state} for x in d.values())
        wait_for(lambda: all_are("64Mi", True, "Serving"), what="the slice, serving")
        gen = next(iter(e.api.slices().values()))["spec"]["pool"]["generation"]
        # physpoold gone: the devices stay in the slice (the scheduler keeps
        # seeing them, with their NUMA node) but cannot be allocated.
        e.kill_daemon()
        wait_for(lambda: all_are("0", False, "NotServing"), timeout=30,
                 what="the slice to say physpoold is not serving")
        d = devices()
        for n, x in d.items():
            self.assertEqual(x["attributes"]["resource.kubernetes.io/numaNode"],
                             {"int": int(n[-1])})
        self.assertGreater(next(iter(e.api.slices().values()))["spec"]["pool"]["generation"],
                           gen)
        self.assertIn("physpoold is not serving", e.plugin_log())
        # Back: the capacity and the attributes as before.
        e.start_daemon()
        wait_for(lambda: all_are("64Mi", True, "Serving"), timeout=60,
                 what="the slice, serving again")

    def test_prepare_gives_the_pod_its_memory_and_unprepare_zeroes_it(self):
        e = self.env
        e.start_plugin()
        claim = e.add_claim("weights", [("mem", "numa1", "8Mi")])
        other = e.add_claim("other", [("mem", "numa0", "1Mi")])
        devs = self.prepare_ok(claim)
        self.assertEqual(devs, [{"request_names": ["mem"], "pool_name": NODE,
                                 "device_name": "numa1",
                                 "cdi_device_ids": [f"{DRIVER}/claim={claim[1]}"]}])
        e.check_cdi(claim[1])
        leases = e.claim_leases(claim[1])
        self.assertEqual(len(leases), 1)
        lease = next(iter(leases.values()))
        self.assertEqual(lease.bytes, 8 * MIB)
        self.assertTrue(lease.has_access_token)
        self.assertTrue(all(r.segment_id == 1 for r in lease.runs), "NUMA node 1's segment")
        env = dict(x.split("=", 1) for x in e.cdi_spec(claim[1])["devices"][0]
                   ["containerEdits"]["env"])
        self.assertEqual(env["PHYSPOOL_LEASE"], lease.id)
        self.assertEqual(env["PHYSPOOL_TOKEN_FILE"], CONTAINER_CLAIM_DIR + "/token")
        # What the mounts show the pod: the daemon's sockets and its claim's
        # token, read-only; no segment or view file of anyone.
        for m in e.cdi_spec(claim[1])["devices"][0]["containerEdits"]["mounts"]:
            self.assertIn("ro", m["options"])
            for name in os.listdir(m["hostPath"]):
                mode = os.lstat(os.path.join(m["hostPath"], name)).st_mode
                self.assertTrue(stat.S_ISSOCK(mode) or name == "token",
                                f"{m['hostPath']}/{name} is visible to the pod")
        # Idempotent, on both versions of the service.
        self.assertEqual(self.prepare_ok(claim), devs)
        self.assertEqual(self.prepare_ok(claim, version="v1beta1"), devs)
        self.assertEqual(len(e.claim_leases(claim[1])), 1)
        # The pod's process: its memory, by the client library alone.
        out = e.run_tenant(claim[1], "fill", "165")
        self.assertEqual(out.returncode, 0, out.stderr + out.stdout)
        self.assertEqual(out.stdout.split(), ["ok", lease.id, str(8 * MIB), str(len(lease.runs))])
        self.assertEqual(e.read_view(lease.id), b"\xa5" * (8 * MIB),
                         "the pod's writes are in the lease's view")
        admin_view = e.call("Admin", "GetLease", e.pb.GetLeaseRequest(lease_id=lease.id),
                            resp=e.pb.GetLeaseResponse).lease
        e.dma_write(admin_view, 0xEE)  # and the device wrote to its pages
        # Its token reaches its lease and nothing else.
        self.prepare_ok(other)
        other_lease = next(iter(e.claim_leases(other[1])))
        out = e.run_tenant(claim[1], "denied", other_lease)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(out.stdout.count("denied"), 3, out.stdout)
        with open(os.path.join(e.plugin_dir, "claims", claim[1], "token")) as f:
            claim_token = f.read().strip()
        for service, method, req in [
                ("Pool", "ListLeases", e.pb.ListLeasesRequest()),
                ("Pool", "Renew", e.pb.RenewRequest(lease_id=lease.id)),
                ("Pool", "Release", e.pb.ReleaseRequest(lease_id=lease.id)),
                ("Admin", "ListSegments", e.pb.ListSegmentsRequest())]:
            fn = e.channel.unary_unary(f"/physpool.v1.{service}/{method}",
                                       request_serializer=lambda m: m.SerializeToString(),
                                       response_deserializer=lambda b: b)
            with self.assertRaises(grpc.RpcError) as cm:
                fn(req, timeout=10, metadata=[("authorization", "Bearer " + claim_token)])
            self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED,
                             f"{service}.{method}")
        # Empty requests succeed.
        self.assertEqual(e.kubelet.prepare([]), {})
        self.assertEqual(e.kubelet.unprepare([]), {})
        # Unprepare: the lease ends, its memory is zeroed and free again.
        free_before = e.pool().free_bytes
        r = e.kubelet.unprepare([claim])
        self.assertEqual(r, {claim[1]: {"error": ""}})
        self.assertEqual(e.claim_leases(claim[1]), {})
        self.assertFalse(os.path.exists(os.path.join(e.cdi, f"physpool-{claim[1]}.json")))
        self.assertFalse(os.path.exists(os.path.join(e.plugin_dir, "claims", claim[1])))
        wait_for(lambda: e.pool().free_bytes == free_before + 8 * MIB and
                 e.pool().scrubbing_bytes == 0, what="the memory back")
        self.assertEqual(e.read_backing(admin_view), b"\0" * (8 * MIB), "zeroed")
        self.assertFalse(os.path.exists(os.path.join(e.sim, f"lease-{lease.id}.view")))
        # Idempotent; an unknown claim is fine.
        self.assertEqual(e.kubelet.unprepare([claim]), {claim[1]: {"error": ""}})
        self.assertEqual(e.kubelet.unprepare([("ml", "no-such-uid", "gone")]),
                         {"no-such-uid": {"error": ""}})
        # The claim's token reaches nothing now; the other claim still works.
        with self.assertRaises(grpc.RpcError) as cm:
            e.channel.unary_unary("/physpool.v1.Pool/GetPoolInfo",
                                  request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=lambda b: b)(
                e.pb.GetPoolInfoRequest(), timeout=10,
                metadata=[("authorization", "Bearer " + claim_token)])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        out = e.run_tenant(other[1], "fill", "1")
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_claim_errors_are_per_claim(self):
        e = self.env
        e.start_plugin()
        good = e.add_claim("good", [("mem", "numa0", "2Mi")])
        missing = ("ml", "uid-of-nothing", "nothing")
        moved = e.add_claim("moved", [("mem", "numa0", "1Mi")])
        e.api.delete_claim("ml", "moved")
        e.add_claim("moved", [("mem", "numa0", "1Mi")])  # a new UID, same name
        unalloc = e.api.add_claim({"metadata": {"namespace": "ml", "name": "pending"},
                                   "spec": {"devices": {"requests": []}}})
        unalloc = ("ml", unalloc["metadata"]["uid"], "pending")
        badcfg = e.add_claim("badcfg", [("mem", "numa0", "1Mi")],
                             config={"apiVersion": "dma.physpool.io/v1", "kind": "DmaConfig",
                                     "alignment": "3Ki"})
        unknown = e.add_claim("unknown", [("mem", "numa0", "1Mi")],
                              config={"apiVersion": "dma.physpool.io/v1", "kind": "DmaConfig",
                                      "colour": "blue"})
        toobig = e.add_claim("toobig", [("mem", "numa0", "65Mi")])
        nodev = e.add_claim("nodev", [("mem", "numa7", "1Mi")])
        r = e.kubelet.prepare([good, missing, moved, unalloc, badcfg, unknown, toobig, nodev])
        self.assertEqual(len(r), 8)
        self.assertEqual(r[good[1]]["error"], "")
        expect = {missing: "not found", moved: "UID", unalloc: "not allocated",
                  badcfg: "power of two", unknown: "colour", toobig: "fits",
                  nodev: "numa7"}
        for c, words in expect.items():
            err = r[c[1]]["error"]
            self.assertTrue(err, f"{c} should fail")
            self.assertTrue(any(w.lower() in err.lower() for w in words.split("|")),
                            f"{c}: {err}")
            self.assertFalse(os.path.exists(os.path.join(e.cdi, f"physpool-{c[1]}.json")))
        # Only the good claim holds memory.
        self.assertEqual({l.label.split()[0] for l in e.leases().values()},
                         {f"dra-claim={good[1]}"})
        # Unpreparing the failed ones is fine and leaves nothing behind.
        r = e.kubelet.unprepare([good, missing, moved, unalloc, badcfg, unknown, toobig, nodev])
        self.assertTrue(all(v["error"] == "" for v in r.values()), r)
        self.assertEqual(e.leases(), {})

    def test_opaque_config_shapes_the_lease(self):
        e = self.env
        e.start_plugin()
        claim = e.add_claim("aligned", [("mem", "numa0", "4Mi")],
                            config={"apiVersion": "dma.physpool.io/v1", "kind": "DmaConfig",
                                    "alignment": "2Mi", "maxSegments": 1})
        # Something in the way, so that an unaligned first fit would differ.
        e.call("Pool", "Allocate", e.pb.AllocateRequest(bytes=4096, numa_node=0,
                                                         numa_strict=True, ttl_seconds=600),
               token="other")
        self.prepare_ok(claim)
        lease = next(iter(e.claim_leases(claim[1]).values()))
        self.assertEqual(len(lease.runs), 1)
        self.assertEqual(lease.runs[0].iova % (2 * MIB), 0)
        # Two requests in one claim: a lease each, both named in the env.
        two = e.add_claim("two", [("a", "numa0", "1Mi"), ("b", "numa1", "3Mi")])
        devs = self.prepare_ok(two)
        self.assertEqual([(d["request_names"], d["device_name"]) for d in devs],
                         [(["a"], "numa0"), (["b"], "numa1")])
        leases = e.claim_leases(two[1])
        self.assertEqual(sorted(l.bytes for l in leases.values()), [1 * MIB, 3 * MIB])
        env = dict(x.split("=", 1) for x in e.cdi_spec(two[1])["devices"][0]
                   ["containerEdits"]["env"])
        self.assertEqual(set(env["PHYSPOOL_LEASES"].split(",")),
                         {f"{l.label.split()[-1]}={i}" for i, l in leases.items()})
        e.check_cdi(two[1])

    def test_a_claim_that_did_not_fit_is_prepared_once_memory_is_free(self):
        e = self.env
        e.start_plugin()
        hog = e.call("Pool", "Allocate", e.pb.AllocateRequest(
            bytes=60 * MIB, numa_node=0, numa_strict=True, ttl_seconds=600), token="other").lease
        claim = e.add_claim("later", [("mem", "numa0", "8Mi")])
        r = e.kubelet.prepare([claim])
        self.assertIn("Allocate", r[claim[1]]["error"])
        self.assertEqual(e.claim_leases(claim[1]), {})
        # kubelet retries once the memory is back: not the remembered error.
        e.call("Pool", "Release", e.pb.ReleaseRequest(lease_id=hog.id), token="other")
        wait_for(lambda: e.pool().scrubbing_bytes == 0, what="the memory zeroed")
        self.prepare_ok(claim)
        self.assertEqual(len(e.claim_leases(claim[1])), 1)

    def test_a_claim_whose_lease_ended_gets_a_new_one(self):
        e = self.env
        e.start_plugin()
        claim = e.add_claim("revoked", [("mem", "numa1", "2Mi")])
        self.prepare_ok(claim)
        old = next(iter(e.claim_leases(claim[1])))
        e.call("Admin", "RevokeLease", e.pb.RevokeLeaseRequest(lease_id=old, reason="test"),
               resp=e.pb.RevokeLeaseResponse)
        # The cleanup pass notices; kubelet's next prepare makes a new lease
        # and a CDI spec that names it.
        def phase():
            with open(os.path.join(e.plugin_dir, "state.json")) as f:
                return json.load(f)["claims"][claim[1]]["phase"]
        wait_for(lambda: phase() == "preparing", what="the claim marked")
        self.prepare_ok(claim)
        leases = e.claim_leases(claim[1])
        self.assertEqual(len(leases), 1)
        new = next(iter(leases))
        self.assertNotEqual(new, old)
        env = dict(x.split("=", 1) for x in e.cdi_spec(claim[1])["devices"][0]
                   ["containerEdits"]["env"])
        self.assertEqual(env["PHYSPOOL_LEASE"], new)
        self.assertEqual(e.run_tenant(claim[1], "fill", "3").returncode, 0)

    def test_a_404_that_is_not_the_claims_does_not_unprepare_it(self):
        e = self.env
        e.start_plugin()
        claim = e.add_claim("kept", [("mem", "numa0", "2Mi")])
        self.prepare_ok(claim)
        # A 404 without the API server's NotFound Status for the claim (a
        # proxy, resource.k8s.io/v1 not served): never a reason to release.
        e.api.inject("GET", r".*/resourceclaims/kept", 404, reason="", times=None)
        time.sleep(3)  # three cleanup passes
        self.assertEqual(len(e.claim_leases(claim[1])), 1)
        e.api.faults.clear()
        e.api.delete_claim("ml", "kept")
        wait_for(lambda: not e.claim_leases(claim[1]), what="the real NotFound acted on")

    def test_kill_9_at_each_step_leaves_no_orphan_and_no_claim_without_lease(self):
        e = self.env
        for i, step in enumerate(PREPARE_STEPS + UNPREPARE_STEPS):
            with self.subTest(step=step):
                claim = e.add_claim(f"c{i}", [("mem", "numa0", "2Mi")])
                if step.startswith("unprepare"):
                    e.start_plugin()
                    self.prepare_ok(claim)
                    e.stop_plugin()
                p = e.start_plugin(crash_at=step)
                call = e.kubelet.prepare if step.startswith("prepare") else e.kubelet.unprepare
                with self.assertRaises(grpc.RpcError):
                    call([claim])
                p.wait(timeout=20)
                self.assertEqual(p.returncode, -signal.SIGKILL, e.plugin_log())
                # Restarted, the plugin's start-up pass settles the claim; kubelet
                # then calls again, as it does for a call that failed.
                e.kubelet.close()
                e.start_plugin()
                if step.startswith("prepare"):
                    self.assertLessEqual(len(e.claim_leases(claim[1])), 1)
                    devs = self.prepare_ok(claim)
                    self.assertEqual(len(devs), 1)
                    self.assertEqual(len(e.claim_leases(claim[1])), 1, "exactly one lease")
                    e.check_cdi(claim[1])
                    out = e.run_tenant(claim[1], "fill", "7")
                    self.assertEqual(out.returncode, 0, out.stderr)
                    self.assertEqual(e.kubelet.unprepare([claim]), {claim[1]: {"error": ""}})
                else:
                    # Unprepare had begun: the start-up pass finished it.
                    self.assertEqual(e.claim_leases(claim[1]), {})
                    self.assertEqual(e.kubelet.unprepare([claim]), {claim[1]: {"error": ""}})
                self.assertEqual(e.claim_leases(claim[1]), {})
                self.assertFalse(os.path.exists(os.path.join(e.cdi, f"physpool-{claim[1]}.json")))
                e.stop_plugin()
                e.kubelet.close()
        self.assertEqual(e.leases(), {}, "no orphan lease")
        with open(os.path.join(e.plugin_dir, "state.json")) as f:
            self.assertEqual(json.load(f)["claims"], {})

    def test_a_claim_deleted_while_the_plugin_is_down_is_cleaned_up(self):
        e = self.env
        e.start_plugin()
        gone = e.add_claim("gone", [("mem", "numa0", "2Mi")])
        kept = e.add_claim("kept", [("mem", "numa1", "2Mi")])
        self.prepare_ok(gone)
        self.prepare_ok(kept)
        e.stop_plugin(signal.SIGKILL)
        e.api.delete_claim("ml", "gone")
        e.kubelet.close()
        e.start_plugin()
        self.assertEqual(e.claim_leases(gone[1]), {}, "released at start")
        self.assertEqual(len(e.claim_leases(kept[1])), 1)
        # And by the periodic pass while running.
        e.api.delete_claim("ml", "kept")
        wait_for(lambda: not e.claim_leases(kept[1]), what="the periodic cleanup")
        self.assertFalse(os.path.exists(os.path.join(e.cdi, f"physpool-{kept[1]}.json")))

    def test_kill_9_of_physpoold_keeps_the_claims_lease(self):
        e = self.env
        e.start_plugin()
        claim = e.add_claim("durable", [("mem", "numa0", "4Mi")])
        devs = self.prepare_ok(claim)
        lease = next(iter(e.claim_leases(claim[1])))
        self.assertEqual(e.run_tenant(claim[1], "fill", "90").returncode, 0)
        e.kill_daemon()
        # kubelet calls while physpoold is away: the claim stays prepared
        # (physpoold answers again within the call's deadline).
        e.start_daemon()
        self.assertEqual(self.prepare_ok(claim), devs)
        self.assertEqual(set(e.claim_leases(claim[1])), {lease})
        self.assertEqual(e.read_view(lease), bytes([90]) * (4 * MIB))
        out = e.run_tenant(claim[1], "fill", "91")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(e.kubelet.unprepare([claim]), {claim[1]: {"error": ""}})
        self.assertEqual(e.leases(), {})


if __name__ == "__main__":
    if len(sys.argv) < 8:
        sys.exit(__doc__)
    PHYSPOOLD, DRA, CTL, TENANT, SRC, NPM, PYGEN = map(os.path.abspath, sys.argv[1:8])
    del sys.argv[1:8]
    for tool in ("unshare", "node", "protoc", "openssl"):  # protoc: fake_kubelet
        if shutil.which(tool) is None:
            sys.exit(f"dra_test: {tool} is missing (make deps installs it)")
    unittest.main(verbosity=2)
