#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""deploy/k8s, offline: every overlay renders (kubectl kustomize), every
rendered object validates against its kind's schema with no unknown field
(validate.mjs), yamllint passes over deploy/, the ConfigMaps' YAML passes
`physpoold --check-config`, the PrometheusRule is the rules file, the
example tokens hash to the config's, and the DaemonSet has what the issue
asks of it.

usage: k8s_test.py PHYSPOOLD SOURCE_DIR NPM_DIR
  NPM_DIR: where `npm ci` installed tests/deploy/package-lock.json
"""
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

from rbac_verbs import rbac_verb

PHYSPOOLD, SRC, NPM_DIR = sys.argv[1], sys.argv[2], sys.argv[3]
K8S = os.path.join(SRC, "deploy", "k8s")
RENDERS = ["overlays/sim", "overlays/vfio", "overlays/dra", "examples/tenant", "examples/dra",
           "examples/numa"]
DAEMON_OVERLAYS = {"overlays/sim": "sim", "overlays/vfio": "vfio", "overlays/dra": "sim"}
DRIVER = "dma.physpool.io"
# What physpool-dra calls at the API server (docs/kubernetes.md, the
# plugin's contract) and the RBAC verb of each: the ClusterRole must grant
# exactly these.
DRA_API_CALLS = [
    ("GET", "/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims/{name}"),
    ("GET", "/apis/resource.k8s.io/v1/resourceslices?fieldSelector=..."),
    ("POST", "/apis/resource.k8s.io/v1/resourceslices"),
    ("PUT", "/apis/resource.k8s.io/v1/resourceslices/{name}"),
    ("DELETE", "/apis/resource.k8s.io/v1/resourceslices/{name}"),
    ("GET", "/api/v1/nodes/{name}"),
]


def need(tool):
    path = shutil.which(tool)
    if not path:
        raise AssertionError(f"{tool} is not installed (make deps installs it; kubectl "
                             "comes with the machine image)")
    return path


def render(rel):
    out = subprocess.run([need("kubectl"), "kustomize", os.path.join(K8S, rel)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {rel}: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate(objects):
    """(exit code, output) of validate.mjs over `objects`."""
    need("node")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(objects, f)
    try:
        out = subprocess.run([need("node"), os.path.join(NPM_DIR, "validate.mjs"), f.name],
                             capture_output=True, text=True, cwd=NPM_DIR)
    finally:
        os.unlink(f.name)
    return out.returncode, out.stdout + out.stderr


def one(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind
             and (name is None or o["metadata"]["name"].startswith(name))]
    if len(found) != 1:
        raise AssertionError(f"want one {kind} {name or ''}, found {len(found)}")
    return found[0]


class K8sTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rendered = {rel: render(rel) for rel in RENDERS}

    def test_every_overlay_renders(self):
        kinds = {o["kind"] for o in self.rendered["overlays/sim"]}
        self.assertEqual(kinds, {"Namespace", "ServiceAccount", "ConfigMap", "Secret",
                                 "DaemonSet", "Service", "ServiceMonitor", "PrometheusRule",
                                 "NetworkPolicy"})
        self.assertEqual({o["kind"] for o in self.rendered["overlays/vfio"]}, kinds)
        self.assertEqual({o["kind"] for o in self.rendered["overlays/dra"]},
                         kinds | {"ClusterRole", "ClusterRoleBinding", "DeviceClass",
                                  "ValidatingAdmissionPolicy",
                                  "ValidatingAdmissionPolicyBinding"})
        self.assertEqual({o["kind"] for o in self.rendered["examples/tenant"]},
                         {"Namespace", "Secret", "Pod"})
        self.assertEqual({o["kind"] for o in self.rendered["examples/dra"]},
                         {"Namespace", "ResourceClaimTemplate", "Pod"})
        self.assertEqual({o["kind"] for o in self.rendered["examples/numa"]},
                         {"Namespace", "ResourceClaimTemplate", "Pod"})

    def test_every_object_validates_with_no_unknown_field(self):
        for rel, objects in self.rendered.items():
            with self.subTest(rel=rel):
                code, out = validate(objects)
                self.assertEqual(code, 0, out)
                self.assertEqual(out.count(": valid"), len(objects), out)

    def test_validator_catches_bad_objects(self):
        # The check above can fail: typos, unknown fields and wrong types
        # in each kind that matters, including the CRDs' objects.
        sim = self.rendered["overlays/sim"]
        cases = []
        ds = copy.deepcopy(one(sim, "DaemonSet"))
        ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilties"] = {}
        cases.append((ds, "unknown field spec.template.spec.containers[0].securityContext.capabilties"))
        ds = copy.deepcopy(one(sim, "DaemonSet"))
        ds["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["grpc"]["port"] = "health"
        cases.append((ds, "port must be integer"))
        sm = copy.deepcopy(one(sim, "ServiceMonitor"))
        sm["spec"]["endpoints"][0]["intervall"] = "15s"
        cases.append((sm, "unknown field spec.endpoints[0].intervall"))
        pr = copy.deepcopy(one(sim, "PrometheusRule"))
        pr["spec"]["groups"][0]["rules"][0]["fore"] = "10m"
        cases.append((pr, "unknown field spec.groups[0].rules[0].fore"))
        np = copy.deepcopy(one(sim, "NetworkPolicy"))
        np["spec"]["policyTypes"] = "Ingress"
        cases.append((np, "policyTypes must be array"))
        tmpl = copy.deepcopy(one(self.rendered["examples/dra"], "ResourceClaimTemplate"))
        tmpl["spec"]["spec"]["devices"]["requests"][0]["exactly"]["capacity"]["request"] = {}
        cases.append((tmpl, "unknown field spec.spec.devices.requests[0].exactly.capacity.request"))
        tmpl = copy.deepcopy(one(self.rendered["examples/numa"], "ResourceClaimTemplate"))
        tmpl["spec"]["spec"]["devices"]["constraints"][0]["matchAttributes"] = "x"
        cases.append((tmpl, "unknown field spec.spec.devices.constraints[0].matchAttributes"))
        tmpl = copy.deepcopy(one(self.rendered["examples/numa"], "ResourceClaimTemplate"))
        tmpl["spec"]["spec"]["devices"]["constraints"][0]["requests"] = "gpu"
        cases.append((tmpl, "requests must be array"))
        dc = copy.deepcopy(one(self.rendered["overlays/dra"], "DeviceClass"))
        dc["spec"]["selectors"][0]["cel"] = {}
        cases.append((dc, "cel must have required property expression"))
        cases.append(({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}},
                      "no schema"))
        for obj, want in cases:
            with self.subTest(want=want):
                code, out = validate([obj])
                self.assertEqual(code, 1, out)
                self.assertIn(want, out)

    def test_yamllint(self):
        out = subprocess.run([need("yamllint"), "-c", os.path.join(SRC, "deploy", ".yamllint"),
                              "--strict", os.path.join(SRC, "deploy")],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

    def test_configmaps_pass_check_config(self):
        for rel, source in DAEMON_OVERLAYS.items():
            with self.subTest(rel=rel):
                cm = one(self.rendered[rel], "ConfigMap", "physpoold-config")
                with tempfile.TemporaryDirectory() as d:
                    path = os.path.join(d, "physpoold.yaml")
                    with open(path, "w") as f:
                        f.write(cm["data"]["physpoold.yaml"])
                    out = subprocess.run([PHYSPOOLD, "--check-config", path],
                                         capture_output=True, text=True)
                self.assertEqual(out.returncode, 0, out.stderr)
                effective = yaml.safe_load(out.stdout)
                self.assertEqual(effective["listen"]["unix"], "/run/physpool/physpool.sock")
                self.assertEqual(effective["listen"]["tcp"], "")
                self.assertFalse(effective["implicit_tenant"])
                self.assertEqual(effective["source"]["type"], source)

    def test_tokens_match_the_config(self):
        for rel in DAEMON_OVERLAYS:
            objects = self.rendered[rel]
            config = yaml.safe_load(one(objects, "ConfigMap")["data"]["physpoold.yaml"])
            hashes = {t["name"]: t["token_sha256"] for t in config["tenants"]}
            secret = one(objects, "Secret", "physpool-tenant-tokens")
            self.assertTrue(secret["stringData"])
            for tenant, token in secret["stringData"].items():
                with self.subTest(rel=rel, tenant=tenant):
                    self.assertIn(hashlib.sha256(token.encode()).hexdigest(), hashes[tenant])
            tenant_token = one(self.rendered["examples/tenant"], "Secret")["stringData"]["token"]
            self.assertIn(hashlib.sha256(tenant_token.encode()).hexdigest(), hashes["demo"])

    def test_prometheusrule_is_the_rules_file(self):
        with open(os.path.join(SRC, "deploy", "prometheus", "physpool.rules.yml")) as f:
            rules = yaml.safe_load(f)
        for rel in DAEMON_OVERLAYS:
            pr = one(self.rendered[rel], "PrometheusRule")
            self.assertEqual(pr["spec"], rules,
                             "regenerate: deploy/prometheus/gen-prometheusrule.py "
                             "deploy/k8s/base/prometheusrule.yaml")

    def test_daemonset(self):
        for rel in DAEMON_OVERLAYS:
            with self.subTest(rel=rel):
                objects = self.rendered[rel]
                ds = one(objects, "DaemonSet")
                spec = ds["spec"]["template"]["spec"]
                c = spec["containers"][0]
                self.assertEqual(c["name"], "physpoold")
                self.assertEqual(spec["priorityClassName"], "system-node-critical")
                self.assertEqual(ds["spec"]["updateStrategy"],
                                 {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
                # The daemon's shutdown: 3 s for in-flight calls at most,
                # 1.6 s measured idle; the grace period leaves a margin.
                self.assertGreaterEqual(spec["terminationGracePeriodSeconds"], 10)
                health = [a for a in c["args"] if a.startswith("--health-listen=")]
                self.assertEqual(len(health), 1)
                port = int(health[0].rsplit(":", 1)[1])
                for probe in ["startupProbe", "readinessProbe", "livenessProbe"]:
                    if probe == "livenessProbe" and rel == "overlays/vfio":
                        # The keeper restarts a hung daemon itself: a
                        # liveness probe would restart the keeper too and
                        # void every lease.
                        self.assertNotIn(probe, c)
                        continue
                    self.assertEqual(c[probe]["grpc"]["port"], port, probe)
                self.assertIn("requests", c["resources"])
                self.assertIn("memory", c["resources"]["limits"])
                self.assertEqual(c["securityContext"]["capabilities"]["drop"], ["ALL"])
                mounts = {m["mountPath"] for m in c["volumeMounts"]}
                self.assertTrue({"/run/physpool", "/var/lib/physpool", "/etc/physpool"} <= mounts)
                volumes = {v["name"]: v for v in spec["volumes"]}
                self.assertEqual(volumes["run"]["hostPath"]["path"], "/run/physpool")
                self.assertEqual(volumes["store"]["hostPath"]["path"], "/var/lib/physpool")
                cm = one(objects, "ConfigMap")
                self.assertEqual(volumes["config"]["configMap"]["name"], cm["metadata"]["name"])
                svc = one(objects, "Service")
                self.assertEqual(svc["spec"]["selector"],
                                 ds["spec"]["template"]["metadata"]["labels"])
                sm = one(objects, "ServiceMonitor")
                self.assertEqual(sm["spec"]["endpoints"][0]["port"],
                                 svc["spec"]["ports"][0]["name"])
                self.assertTrue(set(sm["spec"]["selector"]["matchLabels"].items())
                                <= set(svc["metadata"]["labels"].items()))
        sim = one(self.rendered["overlays/sim"], "DaemonSet")["spec"]["template"]["spec"]
        self.assertNotIn("physpool.io/accelerator", sim["nodeSelector"])
        # uid 0 with only the quarantine's /proc-scan capabilities.
        sc = sim["containers"][0]["securityContext"]
        self.assertEqual((sc["runAsUser"], sc["runAsGroup"]), (0, 10001))
        self.assertEqual(sc["capabilities"]["add"], ["SYS_PTRACE", "DAC_READ_SEARCH"])
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertNotIn("privileged", sim["containers"][0]["securityContext"])
        vfio = one(self.rendered["overlays/vfio"], "DaemonSet")["spec"]["template"]["spec"]
        self.assertEqual(vfio["nodeSelector"]["physpool.io/accelerator"], "true")
        vc = vfio["containers"][0]
        self.assertEqual(vc["securityContext"]["capabilities"]["add"], ["IPC_LOCK"])
        self.assertEqual(vc["resources"]["requests"]["hugepages-2Mi"],
                         vc["resources"]["limits"]["hugepages-2Mi"])
        volumes = {v["name"]: v for v in vfio["volumes"]}
        self.assertEqual(volumes["vfio"]["hostPath"]["path"], "/dev/vfio")
        self.assertEqual(volumes["hugepages"]["hostPath"]["path"], "/dev/hugepages")
        config = yaml.safe_load(one(self.rendered["overlays/vfio"], "ConfigMap")["data"]["physpoold.yaml"])
        # Tenant isolation: memfd backing, each lease a udmabuf; the daemon
        # sees tenants' pids (hostPID) for the quarantine.
        self.assertEqual(config["source"]["vfio"]["backing"], "memfd")
        self.assertEqual(config["isolation"]["mode"], "required")
        # physpool-keeper runs the daemon and holds the memory across its
        # crashes; the config points at the keeper's socket.
        keeper = config["source"]["vfio"]["keeper"]
        self.assertEqual(vc["command"][:2], ["/usr/local/bin/physpool-keeper",
                                             "--socket=" + keeper])
        self.assertEqual(vc["command"][2:],
                         ["--watchdog-sec=30", "--", "/usr/local/bin/physpoold"])
        mounts = {m["mountPath"]: m["name"] for m in vc["volumeMounts"]}
        self.assertEqual(mounts[os.path.dirname(keeper)], "keeper")
        self.assertIn("emptyDir", volumes["keeper"])
        self.assertEqual(volumes["udmabuf"]["hostPath"]["path"], "/dev/udmabuf")
        self.assertTrue(vfio["hostPID"])

    def test_each_added_capability_is_explained(self):
        # "only the capabilities it needs, named in a comment each"
        found = set()
        for path in ["base/daemonset.yaml", "overlays/vfio/daemonset-vfio.yaml"]:
            with open(os.path.join(K8S, path)) as f:
                lines = f.read().splitlines()
            for i, line in enumerate(lines):
                for cap in re.findall(r'add: \["([A-Z_]+)"\]', line) or \
                        re.findall(r'^\s+- ([A-Z_]+)$', line):
                    found.add(cap)
                    above = "\n".join(lines[max(0, i - 4):i])
                    self.assertIn(f"{cap}:", above, f"{path}:{i + 1}: {cap} has no comment")
        self.assertEqual(found, {"CHOWN", "IPC_LOCK", "SYS_PTRACE", "DAC_READ_SEARCH"})

    def test_tenant_pod(self):
        pod = one(self.rendered["examples/tenant"], "Pod")
        c = pod["spec"]["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        self.assertEqual(env["PHYSPOOL_ENDPOINT"]["value"], "unix:/run/physpool/physpool.sock")
        self.assertEqual(env["PHYSPOOL_TOKEN"]["valueFrom"]["secretKeyRef"]["name"],
                         one(self.rendered["examples/tenant"], "Secret")["metadata"]["name"])
        volume = pod["spec"]["volumes"][0]
        self.assertEqual(volume["hostPath"]["path"], "/run/physpool")
        self.assertEqual(c["command"][0], "/usr/local/bin/physpool-fill-region")

    def test_dra_overlay(self):
        objects = self.rendered["overlays/dra"]
        ds = one(objects, "DaemonSet")
        spec = ds["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in spec["containers"]}
        self.assertEqual(set(containers), {"physpoold", "physpool-dra"})
        daemon, dra = containers["physpoold"], containers["physpool-dra"]
        self.assertEqual(dra["image"], daemon["image"])
        self.assertEqual(dra["command"], ["/usr/local/bin/physpool-dra"])
        args = dict(a[2:].split("=", 1) for a in dra["args"])
        self.assertEqual(args["driver-name"], DRIVER)
        env = {e["name"]: e for e in dra["env"]}
        self.assertEqual(env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName")
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in dra["volumeMounts"]}

        def host(path):
            self.assertIn(path, mounts, f"physpool-dra does not mount {path}")
            self.assertEqual(volumes[mounts[path]]["hostPath"]["path"], path)
        # The kubelet's and the runtime's directories, at the host's paths
        # (the plugin tells the kubelet its endpoint's host path; the CDI
        # spec names host paths), and physpoold's socket directory.
        host(args["registrar-dir"])
        self.assertEqual(args["registrar-dir"], "/var/lib/kubelet/plugins_registry")
        host(args["plugin-dir"])
        self.assertEqual(args["plugin-dir"], f"/var/lib/kubelet/plugins/{DRIVER}")
        host(args["cdi-dir"])
        self.assertEqual(args["cdi-dir"], "/var/run/cdi")
        host(args["socket-dir"])
        self.assertEqual(args["socket-dir"], "/run/physpool")
        self.assertEqual(args["physpool-endpoint"], "unix:/run/physpool/physpool.sock")
        # The tenant "dra"'s token from the tenant-token Secret, and that
        # tenant in the config.
        token_dir = os.path.dirname(args["physpool-token-file"])
        secret_volume = volumes[mounts[token_dir]]["secret"]
        secret = one(objects, "Secret", "physpool-tenant-tokens")
        self.assertEqual(secret_volume["secretName"], secret["metadata"]["name"])
        self.assertEqual(secret_volume["items"],
                         [{"key": "dra", "path": os.path.basename(args["physpool-token-file"])}])
        config = yaml.safe_load(one(objects, "ConfigMap")["data"]["physpoold.yaml"])
        tenant = [t for t in config["tenants"] if t["name"] == "dra"]
        self.assertEqual(len(tenant), 1)
        self.assertIn(hashlib.sha256(secret["stringData"]["dra"].encode()).hexdigest(),
                      tenant[0]["token_sha256"])
        # The service account token where the plugin looks by default, in
        # the plugin's container only.
        sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
        sources = volumes[mounts[sa_dir]]["projected"]["sources"]
        self.assertEqual([s for s in sources if "serviceAccountToken" in s][0]
                         ["serviceAccountToken"]["path"], "token")
        self.assertEqual([s for s in sources if "configMap" in s][0]["configMap"]["items"],
                         [{"key": "ca.crt", "path": "ca.crt"}])
        self.assertNotIn(sa_dir, {m["mountPath"] for m in daemon["volumeMounts"]})
        self.assertFalse(spec["automountServiceAccountToken"])
        self.assertEqual(dra["securityContext"]["capabilities"]["drop"], ["ALL"])
        self.assertNotIn("add", dra["securityContext"]["capabilities"])
        self.assertFalse(dra["securityContext"]["allowPrivilegeEscalation"])
        # The socket is the daemon's (10001) and 0660.
        self.assertEqual(dra["securityContext"]["runAsGroup"], 10001)

        # RBAC: the pod's service account, bound to a ClusterRole that
        # grants exactly the verbs of the calls the plugin makes.
        sa_name = spec["serviceAccountName"]
        sa = one(objects, "ServiceAccount", sa_name)
        self.assertEqual(sa["metadata"]["name"], sa_name)
        binding = one(objects, "ClusterRoleBinding")
        self.assertEqual(binding["subjects"],
                         [{"kind": "ServiceAccount", "name": sa_name,
                           "namespace": ds["metadata"]["namespace"]}])
        role = one(objects, "ClusterRole")
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io",
                                              "kind": "ClusterRole",
                                              "name": role["metadata"]["name"]})
        granted = set()
        for rule in role["rules"]:
            self.assertNotIn("resourceNames", rule)
            self.assertNotIn("nonResourceURLs", rule)
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        self.assertNotIn("*", (g, r, v))
                        granted.add((g, r, v))
        self.assertEqual(granted, {rbac_verb(m, p) for m, p in DRA_API_CALLS})
        self.assertEqual(granted, {("resource.k8s.io", "resourceclaims", "get"),
                                   ("resource.k8s.io", "resourceslices", "list"),
                                   ("resource.k8s.io", "resourceslices", "create"),
                                   ("resource.k8s.io", "resourceslices", "update"),
                                   ("resource.k8s.io", "resourceslices", "delete"),
                                   ("", "nodes", "get")})
        # No other binding or role reaches the service account.
        self.assertEqual([o for o in objects if o["kind"] in ("Role", "RoleBinding")], [])
        # Slice writes only for the plugin's own node.
        vap = one(objects, "ValidatingAdmissionPolicy")
        self.assertIn(f"system:serviceaccount:{ds['metadata']['namespace']}:{sa_name}",
                      vap["spec"]["matchConditions"][0]["expression"])
        self.assertEqual(one(objects, "ValidatingAdmissionPolicyBinding")["spec"],
                         {"policyName": vap["metadata"]["name"], "validationActions": ["Deny"]})
        # The DeviceClass selects the driver's devices.
        dc = one(objects, "DeviceClass")
        self.assertEqual(dc["metadata"]["name"], DRIVER)
        self.assertEqual(dc["spec"]["selectors"],
                         [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}])
        self.assertNotIn("namespace", dc["metadata"])
        # The API server is reachable despite the default no-egress policy.
        np = one(objects, "NetworkPolicy")
        ports = {p["port"] for e in np["spec"]["egress"] for p in e.get("ports", [])}
        self.assertTrue({443, 6443} <= ports)

    def test_dra_example(self):
        objects = self.rendered["examples/dra"]
        tmpl = one(objects, "ResourceClaimTemplate")
        pod = one(objects, "Pod")
        devices = tmpl["spec"]["spec"]["devices"]
        req = devices["requests"][0]
        self.assertEqual(req["exactly"]["deviceClassName"],
                         one(self.rendered["overlays/dra"], "DeviceClass")["metadata"]["name"])
        self.assertEqual(req["exactly"]["capacity"]["requests"]["memory"], "64Mi")
        opaque = devices["config"][0]["opaque"]
        self.assertEqual(opaque["driver"], DRIVER)
        self.assertEqual((opaque["parameters"]["apiVersion"], opaque["parameters"]["kind"]),
                         ("dma.physpool.io/v1", "DmaConfig"))
        self.assertLessEqual(set(opaque["parameters"]) - {"apiVersion", "kind"},
                             {"alignment", "boundary", "maxSegments", "numaStrict"})
        self.assertEqual(pod["spec"]["resourceClaims"],
                         [{"name": "dma", "resourceClaimTemplateName": tmpl["metadata"]["name"]}])
        c = pod["spec"]["containers"][0]
        self.assertEqual(c["resources"]["claims"], [{"name": "dma"}])
        # Not the daemon's uid (its files are 0600), the daemon's group (the
        # socket is 0660).
        sc = c["securityContext"]
        self.assertNotEqual(sc["runAsUser"], 10001)
        self.assertEqual(sc["runAsGroup"], 10001)
        # The pod holds no token and mounts no hostPath: CDI brings both.
        self.assertNotIn("volumes", pod["spec"])
        self.assertNotIn("env", c)
        self.assertIn("$PHYSPOOL_LEASE", " ".join(c["command"] + c.get("args", [])))


    def test_numa_example(self):
        # An accelerator of another driver and physpool's memory on the same
        # NUMA node: one claim, two requests, matchAttribute over both on
        # the standard attribute the driver publishes.
        objects = self.rendered["examples/numa"]
        tmpl = one(objects, "ResourceClaimTemplate")
        pod = one(objects, "Pod")
        devices = tmpl["spec"]["spec"]["devices"]
        reqs = {r["name"]: r["exactly"] for r in devices["requests"]}
        self.assertEqual(set(reqs), {"gpu", "mem"})
        ours = one(self.rendered["overlays/dra"], "DeviceClass")["metadata"]["name"]
        self.assertEqual(reqs["mem"]["deviceClassName"], ours)
        self.assertNotEqual(reqs["gpu"]["deviceClassName"], ours)
        self.assertNotIn(DRIVER, reqs["gpu"]["deviceClassName"])
        self.assertIn("memory", reqs["mem"]["capacity"]["requests"])
        # The attribute's name is the one physpool-dra publishes.
        with open(os.path.join(SRC, "dra", "slice_publisher.h")) as f:
            published = re.search(r'kStandardNumaAttribute\[\] =\s*"([^"]+)"', f.read())
        self.assertIsNotNone(published)
        self.assertEqual(published.group(1), "resource.kubernetes.io/numaNode")
        self.assertEqual(devices["constraints"],
                         [{"requests": ["gpu", "mem"], "matchAttribute": published.group(1)}])
        opaque = devices["config"][0]["opaque"]
        self.assertEqual(devices["config"][0]["requests"], ["mem"])
        self.assertEqual(opaque["driver"], DRIVER)
        self.assertLessEqual(set(opaque["parameters"]) - {"apiVersion", "kind"},
                             {"alignment", "boundary", "maxSegments", "numaStrict"})
        self.assertEqual(pod["spec"]["resourceClaims"],
                         [{"name": "accel", "resourceClaimTemplateName": tmpl["metadata"]["name"]}])
        c = pod["spec"]["containers"][0]
        self.assertEqual(c["resources"]["claims"], [{"name": "accel"}])
        self.assertNotIn("volumes", pod["spec"])
        self.assertNotEqual(c["securityContext"]["runAsUser"], 10001)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
