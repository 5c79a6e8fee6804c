#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""deploy/grafana: a lint of the dashboard JSON (current schemaVersion, a
`datasource` variable, every panel's datasource templated, no hard-coded
uid, a query and a unit on every panel, unique ids), and every panel's
query run through a real Prometheus that scrapes the real daemon after a
workload that takes every path (simple, contig, multi, aggressive reclaim,
waiting, expiry, revocation, failures): each must parse and return at least
one series. The alert rules are loaded into that Prometheus too and must
evaluate without error.

usage: dashboard_test.py PHYSPOOLD GEN_DIR SOURCE_DIR
"""
import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

PHYSPOOLD, GEN, SRC = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
sys.path.insert(0, os.path.join(SRC, "tests", "server"))
import physpool_testlib as lib  # noqa: E402

pb = lib.load_protos(GEN)
DASHBOARD = os.path.join(SRC, "deploy", "grafana", "physpool-dashboard.json")
RULES = os.path.join(SRC, "deploy", "prometheus", "physpool.rules.yml")
MIB = lib.MIB
A, B, ROOT = lib.TOKENS["alice"], lib.TOKENS["bob"], lib.TOKENS["root"]
# What Grafana substitutes, for a Prometheus scraping every second.
VARIABLES = {"$__rate_interval": "15s", "$instance": ".+", "$job": ".+"}
TEMPLATED = ("${datasource}", "$datasource")


def lint(dash):
    """The problems of a dashboard, as strings."""
    bad = []
    if dash.get("schemaVersion", 0) < 39:
        bad.append(f"schemaVersion {dash.get('schemaVersion')} is not current (>= 39)")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        bad.append("no datasource template variable of type datasource, query prometheus")
    ids = []

    def check_ds(where, d):
        if not isinstance(d, dict) or d.get("uid") not in TEMPLATED:
            bad.append(f"{where}: datasource {d!r} is not the template variable")

    for v in variables.values():
        if v.get("type") == "query":
            check_ds(f"variable {v['name']}", v.get("datasource"))
    for p in dash.get("panels", []):
        ids.append(p.get("id"))
        where = f"panel {p.get('id')} {p.get('title')!r}"
        if "gridPos" not in p:
            bad.append(f"{where}: no gridPos")
        if p.get("type") == "row":
            continue
        check_ds(where, p.get("datasource"))
        targets = p.get("targets") or []
        if not targets or not all(t.get("expr", "").strip() for t in targets):
            bad.append(f"{where}: no query")
        for t in targets:
            check_ds(f"{where} target {t.get('refId')}", t.get("datasource"))
        if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            bad.append(f"{where}: no unit")
        if not p.get("title"):
            bad.append(f"{where}: no title")
    if len(ids) != len(set(ids)) or None in ids:
        bad.append(f"panel ids not unique: {ids}")
    # No datasource uid anywhere but the templated one (and Grafana's own
    # built-in annotations).
    def walk(node, path):
        if isinstance(node, dict):
            if "datasource" in node and isinstance(node["datasource"], dict):
                uid = node["datasource"].get("uid")
                if uid not in TEMPLATED and uid != "-- Grafana --":
                    bad.append(f"{path}: hard-coded datasource uid {uid!r}")
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
    walk(dash, "")
    return sorted(set(bad))


def queries(dash):
    """[(panel title, refId, expr with the variables substituted)]."""
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"]
            for k, v in VARIABLES.items():
                expr = expr.replace(k, v)
            out.append((p["title"], t["refId"], expr))
    return out


class LintTest(unittest.TestCase):
    def setUp(self):
        with open(DASHBOARD) as f:
            self.dash = json.load(f)

    def test_dashboard_passes_lint(self):
        self.assertEqual(lint(self.dash), [])
        self.assertGreaterEqual(len([p for p in self.dash["panels"] if p["type"] != "row"]), 20)

    def test_lint_catches_problems(self):
        panel = next(i for i, p in enumerate(self.dash["panels"]) if p["type"] != "row")
        cases = []
        d = copy.deepcopy(self.dash); d["panels"][panel]["targets"] = []
        cases.append((d, "no query"))
        d = copy.deepcopy(self.dash); del d["panels"][panel]["fieldConfig"]["defaults"]["unit"]
        cases.append((d, "no unit"))
        d = copy.deepcopy(self.dash); d["panels"][panel]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
        cases.append((d, "hard-coded datasource uid"))
        d = copy.deepcopy(self.dash); d["panels"][panel + 1]["id"] = d["panels"][panel]["id"]
        cases.append((d, "panel ids not unique"))
        d = copy.deepcopy(self.dash); d["templating"]["list"] = d["templating"]["list"][1:]
        cases.append((d, "no datasource template variable"))
        d = copy.deepcopy(self.dash); d["schemaVersion"] = 27
        cases.append((d, "schemaVersion 27"))
        for d, want in cases:
            with self.subTest(want=want):
                self.assertTrue(any(want in b for b in lint(d)), lint(d))

    def test_dashboard_covers_the_issue(self):
        text = json.dumps(self.dash)
        for metric in ["physpool_pages", "physpool_segment_largest_free_run_pages",
                       "physpool_alloc_requests_total", "physpool_alloc_duration_seconds_bucket",
                       "physpool_alloc_fallbacks_total", "physpool_waiting_requests",
                       "physpool_wait_duration_seconds_bucket", "physpool_leases",
                       "physpool_lease_bytes", "physpool_lease_expirations_total",
                       "physpool_lease_revocations_total", "physpool_reclaimed_bytes_total",
                       "physpool_scrub_backlog_pages", "physpool_store_errors_total",
                       "physpool_store_writable"]:
            self.assertIn(metric, text)


def free_bytes(d):
    return d.call("Pool", "GetPoolInfo", pb.GetPoolInfoRequest(), pb.GetPoolInfoResponse, ROOT).free_bytes


def wait_free(d, at_least, timeout=10):
    deadline = time.time() + timeout
    while free_bytes(d) < at_least:
        if time.time() > deadline:
            raise AssertionError(f"free memory never reached {at_least}")
        time.sleep(0.05)


def workload(d):
    """Every path and every event the dashboard shows."""
    def alloc(token, timeout=10, **kw):
        return d.call("Pool", "Allocate", pb.AllocateRequest(**kw), pb.AllocateResponse, token,
                      timeout=timeout).lease

    def release(token, lease):
        d.call("Pool", "Release", pb.ReleaseRequest(lease_id=lease.id), pb.ReleaseResponse, token)

    def fails(token, **kw):
        try:
            alloc(token, **kw)
        except Exception:  # noqa: BLE001 - the failure is the point
            return True
        return False

    # Fill the pool (24 MiB) with 1 MiB leases (simple), free every other
    # one: 1 MiB holes.
    leases = [alloc(A, bytes=MIB) for _ in range(24)]
    for lease in leases[::2]:
        release(A, lease)
    held = leases[1::2]
    wait_free(d, 12 * MIB)
    alloc(A, bytes=65536, alignment=65536, max_segments=1)           # contig
    alloc(A, bytes=3 * MIB, alignment=65536, max_segments=4)         # contig -> multi
    assert fails(A, bytes=3 * MIB, alignment=65536, max_segments=1)  # no_space
    assert fails(A, bytes=1 << 40)                                   # never_fits
    # Preemptible leases in what is left, then a reclaiming request.
    while not fails(B, bytes=MIB, preemptible=True):
        pass
    reclaimed = alloc(ROOT, bytes=MIB, alignment=65536, max_segments=1, may_reclaim=True)
    assert reclaimed.path == "aggressive", reclaimed.path
    # The victims' pages outside the window come back after the grace
    # period: take every free page, so that the next request has to wait.
    time.sleep(0.5)
    for size in [256 * 1024, 4096]:
        while not fails(B, bytes=size):
            pass
    # A waiter, served when a lease comes back.
    waited = {}

    def waiter():
        waited["lease"] = alloc(A, bytes=MIB, may_wait=True, timeout=20)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(2.5)  # Prometheus scrapes the waiting gauge at 1
    release(A, held.pop())
    t.join(timeout=25)
    assert "lease" in waited, "the waiting request was not served"
    # An expiry and an admin revocation.
    release(A, held.pop())
    wait_free(d, MIB)
    alloc(A, bytes=65536, ttl_seconds=1)
    d.call("Admin", "RevokeLease", pb.RevokeLeaseRequest(lease_id=held.pop().id, reason="test"),
           pb.RevokeLeaseResponse, ROOT)
    time.sleep(3)  # the lease expires


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def sample(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


class PanelQueryTest(unittest.TestCase):
    def test_every_panel_query_returns_series(self):
        for tool in ["prometheus", "promtool"]:
            self.assertTrue(shutil.which(tool), f"{tool} is not installed (package prometheus)")
        with open(DASHBOARD) as f:
            dash = json.load(f)
        d = lib.Daemon(PHYSPOOLD)
        work = tempfile.mkdtemp(prefix="physpool-dash-")
        prom = None
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            shutil.copy(RULES, os.path.join(work, "physpool.rules.yml"))
            with open(os.path.join(work, "prometheus.yml"), "w") as f:
                f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [physpool.rules.yml]
scrape_configs:
  - job_name: physpool
    static_configs:
      - targets: ['127.0.0.1:{d.metrics_port}']
""")
            log = self.log = open(os.path.join(work, "prometheus.log"), "w")
            prom = subprocess.Popen(["prometheus", f"--config.file={work}/prometheus.yml",
                                     f"--storage.tsdb.path={work}/data",
                                     f"--web.listen-address=127.0.0.1:{port}"],
                                    stdout=log, stderr=log)
            api = f"http://127.0.0.1:{port}/api/v1"

            def get(path, **params):
                url = f"{api}/{path}?" + urllib.parse.urlencode(params, doseq=True)
                try:
                    with urllib.request.urlopen(url, timeout=10) as r:
                        return json.load(r)
                except urllib.error.HTTPError as e:
                    return json.load(e)

            deadline = time.time() + 60
            while True:
                try:
                    if get("query", query="up")["data"]["result"]:
                        break
                except OSError:
                    pass
                self.assertLess(time.time(), deadline, "Prometheus never scraped the daemon")
                time.sleep(0.5)

            workload(d)
            # Every path and event happened (else the queries below would
            # prove nothing).
            m = scrape(d.metrics_port)
            for labels in [dict(path="simple", result="success"), dict(path="contig", result="success"),
                           dict(path="multi", result="success"),
                           dict(result="no_space"), dict(result="never_fits")]:
                self.assertGreater(sample(m, "physpool_alloc_requests_total", **labels), 0,
                                   f"{labels}: " + "\n".join(l for l in m.splitlines()
                                                            if l.startswith("physpool_alloc_")
                                                            and not l.endswith(" 0")))
            for labels in [dict(to="multi"), dict(to="aggressive"), dict(to="wait")]:
                self.assertGreater(sample(m, "physpool_alloc_fallbacks_total", **labels), 0, labels)
            # A request served by reclaim is not counted as an aggressive
            # success (nor timed) by the server today, only as the fallback
            # contig -> aggressive: the lease's path (checked in the
            # workload), the fallback, the revocation and the reclaimed
            # bytes show the path was taken.
            self.assertGreater(sample(m, "physpool_alloc_fallbacks_total", to="aggressive"), 0)
            self.assertGreater(sample(m, "physpool_lease_expirations_total"), 0)
            self.assertGreater(sample(m, "physpool_lease_revocations_total", reason="admin"), 0)
            self.assertGreater(sample(m, "physpool_lease_revocations_total", reason="preempted"), 0)
            self.assertGreater(sample(m, "physpool_reclaimed_bytes_total"), 0)
            self.assertGreater(sample(m, "physpool_wait_duration_seconds_count"), 0)
            time.sleep(3)  # the last samples scraped

            results, empty, broken = [], [], []
            for title, ref, expr in queries(dash):
                body = get("query", query=expr)
                if body.get("status") != "success":
                    broken.append(f"{title} [{ref}]: {body.get('error')}: {expr}")
                elif not body["data"]["result"]:
                    empty.append(f"{title} [{ref}]: {expr}")
                results.append((title, ref, len(body.get("data", {}).get("result", []))))
            for v in dash["templating"]["list"]:
                if v["type"] == "query":
                    metric = v["query"]["query"].split("(", 1)[1].rsplit(",", 1)[0]
                    for k, val in VARIABLES.items():
                        metric = metric.replace(k, val)
                    if not get("series", **{"match[]": metric})["data"]:
                        empty.append(f"variable {v['name']}: {metric}")
            print(f"\n{len(results)} panel queries:")
            for title, ref, n in results:
                print(f"  {n:3d} series  {title} [{ref}]")
            rules = get("rules")["data"]["groups"]
            rule_health = [(r["name"], r["health"], r.get("lastError", ""))
                           for g in rules for r in g["rules"]]
            self.assertEqual(len(rule_health), 7, rule_health)
            for name, health, err in rule_health:
                self.assertEqual(health, "ok", f"alert rule {name}: {err}")
            self.assertEqual(broken, [], "queries that do not parse or fail:\n  " + "\n  ".join(broken))
            self.assertEqual(empty, [], "queries that returned no series:\n  " + "\n  ".join(empty))
        finally:
            if prom:
                prom.terminate()
                prom.wait(timeout=30)
                self.log.close()
            self.assertEqual(d.stop(), 0)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
