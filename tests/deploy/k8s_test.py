#!/usr/bin/python3
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

PHYSPOOLD, SRC, NPM_DIR = sys.argv[1], sys.argv[2], sys.argv[3]
K8S = os.path.join(SRC, "deploy", "k8s")
RENDERS = ["overlays/sim", "overlays/vfio", "examples/tenant"]


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
        self.assertEqual({o["kind"] for o in self.rendered["examples/tenant"]},
                         {"Namespace", "Secret", "Pod"})

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
        for rel in ["overlays/sim", "overlays/vfio"]:
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
                self.assertEqual(effective["source"]["type"], rel.split("/")[1])

    def test_tokens_match_the_config(self):
        for rel in ["overlays/sim", "overlays/vfio"]:
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
        for rel in ["overlays/sim", "overlays/vfio"]:
            pr = one(self.rendered[rel], "PrometheusRule")
            self.assertEqual(pr["spec"], rules,
                             "regenerate: deploy/prometheus/gen-prometheusrule.py "
                             "deploy/k8s/base/prometheusrule.yaml")

    def test_daemonset(self):
        for rel in ["overlays/sim", "overlays/vfio"]:
            with self.subTest(rel=rel):
                objects = self.rendered[rel]
                ds = one(objects, "DaemonSet")
                spec = ds["spec"]["template"]["spec"]
                c = spec["containers"][0]
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
        self.assertTrue(sim["containers"][0]["securityContext"]["runAsNonRoot"])
        self.assertNotIn("add", sim["containers"][0]["securityContext"]["capabilities"])
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
        self.assertEqual(vc["command"][2:], ["--", "/usr/local/bin/physpoold"])
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
        self.assertEqual(found, {"CHOWN", "IPC_LOCK"})

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


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
