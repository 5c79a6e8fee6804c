#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""/metrics of the real daemon: promtool's lint, values against the pool's
state, and a real Prometheus on loopback that scrapes it and answers a query.

usage: metrics_test.py PHYSPOOLD GEN_DIR
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import physpool_testlib as lib

PHYSPOOLD, GEN = sys.argv[1], sys.argv[2]
pb = lib.load_protos(GEN)
A, B, ROOT = lib.TOKENS["alice"], lib.TOKENS["bob"], lib.TOKENS["root"]


def parse(text):
    """{(name, frozenset(labels)): value} of the exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, labels = head, frozenset()
        if "{" in head:
            name, rest = head.split("{", 1)
            pairs = [p for p in rest.rstrip("}").split(",") if p]
            labels = frozenset(tuple(p.split("=", 1)) for p in pairs)
            labels = frozenset((k, v.strip('"')) for k, v in labels)
        out[(name, labels)] = float(value)
    return out


def total(metrics, name, **want):
    return sum(v for (n, labels), v in metrics.items()
               if n == name and all((k, w) in labels for k, w in want.items()))


class MetricsTest(unittest.TestCase):
    def setUp(self):
        self.d = lib.Daemon(PHYSPOOLD)
        self.url = f"http://127.0.0.1:{self.d.metrics_port}/metrics"

    def tearDown(self):
        self.assertEqual(self.d.stop(), 0)

    def scrape(self):
        with urllib.request.urlopen(self.url, timeout=10) as r:
            return r.read().decode()

    def allocate(self, token, **kw):
        return self.d.call("Pool", "Allocate", pb.AllocateRequest(**kw),
                           pb.AllocateResponse, token).lease

    def test_promtool_and_values(self):
        self.allocate(A, bytes=3 * lib.MIB)
        self.allocate(A, bytes=65536, alignment=65536, max_segments=1)
        self.allocate(B, bytes=lib.MIB)
        with self.assertRaises(Exception):
            self.allocate(B, bytes=1 << 40)
        text = self.scrape()
        lint = subprocess.run(["promtool", "check", "metrics"], input=text,
                              capture_output=True, text=True)
        self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)
        m = parse(text)
        info = self.d.call("Pool", "GetPoolInfo", pb.GetPoolInfoRequest(),
                           pb.GetPoolInfoResponse, ROOT)
        page = info.page_size
        self.assertEqual(total(m, "physpool_pages", state="free") * page, info.free_bytes)
        self.assertEqual(total(m, "physpool_pages", state="used") * page, info.used_bytes)
        self.assertEqual(total(m, "physpool_pages") * page, 24 * lib.MIB)
        self.assertEqual(total(m, "physpool_leases", tenant="alice"), 2)
        self.assertEqual(total(m, "physpool_lease_bytes", tenant="bob"), lib.MIB)
        self.assertEqual(total(m, "physpool_alloc_requests_total", path="simple",
                               result="success"), 2)
        self.assertEqual(total(m, "physpool_alloc_requests_total", path="contig",
                               result="success"), 1)
        self.assertEqual(total(m, "physpool_alloc_requests_total", result="never_fits"), 1)
        for seg in info.segments:
            self.assertEqual(total(m, "physpool_segment_largest_free_run_pages",
                                   segment=str(seg.id)) * page, seg.largest_free_run_bytes)
        self.assertEqual(total(m, "physpool_scrub_backlog_pages"), 0)
        self.assertIn(("physpool_alloc_fallbacks_total",
                       frozenset({("from", "any"), ("to", "wait")})), m)

    def test_numa_fallback(self):
        """A non-strict request whose node is full lands on another node,
        says so in its path and counts in physpool_numa_fallback_total;
        a strict one is refused and counts nothing."""
        m = parse(self.scrape())
        for node in ("0", "1"):  # every node of the pool, from 0
            self.assertEqual(m.get(("physpool_numa_fallback_total",
                                    frozenset({("numa", node)}))), 0, node)
        full = self.allocate(A, bytes=8 * lib.MIB, numa_node=1, numa_strict=True)
        self.assertEqual(full.path, "simple")
        with self.assertRaises(Exception) as e:
            self.allocate(A, bytes=lib.MIB, numa_node=1, numa_strict=True)
        self.assertIn("RESOURCE_EXHAUSTED", str(e.exception))
        moved = self.allocate(A, bytes=lib.MIB, numa_node=1)
        self.assertEqual(moved.path, "simple+numa-fallback")
        m = parse(self.scrape())
        self.assertEqual(m[("physpool_numa_fallback_total",
                            frozenset({("numa", "1")}))], 1)
        self.assertEqual(m[("physpool_numa_fallback_total",
                            frozenset({("numa", "0")}))], 0)
        stats = self.d.call("Admin", "GetStats", pb.GetStatsRequest(),
                            pb.GetStatsResponse, ROOT)
        self.assertEqual(stats.fallbacks["numa->any"], 1)

    def test_build_info(self):
        """physpool_build_info{version,revision} 1, what --version says."""
        line = subprocess.run([PHYSPOOLD, "--version"], capture_output=True,
                              text=True, check=True).stdout
        m = re.match(r"physpoold (\S+) \(revision (\S+), built ", line)
        self.assertIsNotNone(m, line)
        text = self.scrape()
        self.assertIn("# TYPE physpool_build_info gauge", text)
        self.assertEqual(parse(text).get(("physpool_build_info", frozenset(
            {("version", m[1]), ("revision", m[2])}))), 1, text)

    def test_real_prometheus_scrapes_it(self):
        self.allocate(A, bytes=2 * lib.MIB)
        work = tempfile.mkdtemp(prefix="physpool-prom-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: physpool
    static_configs:
      - targets: ['127.0.0.1:{self.d.metrics_port}']
""")
        log = open(os.path.join(work, "prometheus.log"), "w")
        prom = subprocess.Popen(["prometheus", f"--config.file={work}/prometheus.yml",
                                 f"--storage.tsdb.path={work}/data",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=log)
        try:
            query = urllib.parse.quote('sum(physpool_pages{state="free"})')
            result = None
            deadline = time.time() + 60
            while time.time() < deadline and result is None:
                time.sleep(0.5)
                try:
                    with urllib.request.urlopen(
                            f"http://127.0.0.1:{port}/api/v1/query?query={query}",
                            timeout=5) as r:
                        body = json.load(r)
                except OSError:
                    continue
                if body["status"] == "success" and body["data"]["result"]:
                    result = float(body["data"]["result"][0]["value"][1])
            self.assertIsNotNone(result, "Prometheus never had the series")
            self.assertEqual(result * 4096, 22 * lib.MIB)
        finally:
            prom.terminate()
            prom.wait(timeout=30)
            log.close()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
