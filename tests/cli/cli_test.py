#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""physpoolctl against the real daemon: each command's table and JSON output,
the exit code of each error class, and the map of a known occupancy; and
against a scripted fake daemon (fake_physpool.py): lists followed across
pages, alloc's request id and retries.

usage: cli_test.py PHYSPOOLCTL PHYSPOOLD GEN_DIR
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../server"))
sys.path.insert(0, HERE)
import physpool_testlib as lib  # noqa: E402
from fake_physpool import FakePhyspool  # noqa: E402

CTL, PHYSPOOLD, GEN = sys.argv[1], sys.argv[2], sys.argv[3]
pb = lib.load_protos(GEN)
A, B, ROOT = lib.TOKENS["alice"], lib.TOKENS["bob"], lib.TOKENS["root"]
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def run_ctl(env, *args, timeout=60):
    return subprocess.run([CTL, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


class CliTest(unittest.TestCase):
    def setUp(self):
        self.d = lib.Daemon(PHYSPOOLD)
        self.env = dict(os.environ, PHYSPOOL_ENDPOINT="unix:" + self.d.socket,
                        PHYSPOOL_TOKEN=ROOT)

    def tearDown(self):
        self.assertEqual(self.d.stop(), 0)

    def ctl(self, *args, token=None, code=0):
        env = dict(self.env)
        if token is not None:
            env["PHYSPOOL_TOKEN"] = token
        r = subprocess.run([CTL, *args], capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, code, f"{args}: {r.stdout}{r.stderr}")
        if code != 0:
            self.assertTrue(r.stderr.startswith("Error: "), r.stderr)
        return r.stdout, r.stderr

    def json(self, *args, token=None):
        out, _ = self.ctl(*args, "-o", "json", token=token)
        return json.loads(out)

    def allocate(self, token=A, **kw):
        return self.d.call("Pool", "Allocate", pb.AllocateRequest(**kw),
                           pb.AllocateResponse, token).lease

    def test_health_and_pool_status(self):
        out, _ = self.ctl("health")
        self.assertEqual(out, "SERVING\n")
        self.assertEqual(self.json("health")["status"], "SERVING")
        self.allocate(bytes=8 * lib.MIB)
        out, _ = self.ctl("pool", "status")
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("SEGMENT"))
        self.assertIn("[###############...............]", lines[1])  # 8 of 16 MiB
        self.assertIn("8 MiB", lines[1])
        self.assertIn("total 24 MiB: used 8 MiB", out)
        info = self.json("pool", "status")
        self.assertEqual(info["page_size"], "4096")
        self.assertEqual(len(info["segments"]), 2)
        self.assertEqual(int(info["used_bytes"]), 8 * lib.MIB)

    def test_pool_map_of_a_known_occupancy(self):
        self.allocate(bytes=8 * lib.MIB)                      # segment 0, first half
        self.allocate(bytes=lib.MIB, preemptible=True)        # then 1 MiB preemptible
        out, _ = self.ctl("pool", "map", "--segment", "0", "--width", "16", "--ascii")
        self.assertEqual(out, "\n".join([
            "segment 0  0x100000000  16 MiB  freelist 0  numa 0  (1 cell = 256 KiB)",
            "################",
            "################",
            "PPPP............",
            "................",
            "legend: # used  P preemptible  ~ scrubbing  . free", ""]))
        occ = self.json("pool", "map")
        self.assertEqual(len(occ["segments"]), 2)
        states = [r["state"] for r in occ["segments"][0]["runs"]]
        self.assertEqual(states, ["USED", "PREEMPTIBLE", "FREE"])
        out, _ = self.ctl("pool", "map")  # unicode shades by default
        self.assertIn("\u2588", out)
        self.assertIn("\u2593", out)

    def test_segments(self):
        out, _ = self.ctl("segment", "list")
        self.assertEqual(len(out.splitlines()), 3)
        segs = self.json("segment", "list")["segments"]
        out, _ = self.ctl("segment", "drain", str(segs[0]["id"]))
        self.assertIn("draining", out)
        self.assertTrue(self.json("segment", "undrain", "0")["segment"]["draining"] is False)
        added = self.json("segment", "add", "--bytes", "2MiB", "--freelist", "2")["segment"]
        self.assertEqual(int(added["bytes"]), 2 * lib.MIB)
        out, _ = self.ctl("segment", "remove", str(added["id"]))
        self.assertEqual(out, f"segment {added['id']} removed\n")
        self.ctl("segment", "remove", "99", code=5)
        self.ctl("segment", "drain", code=2)
        self.ctl("segment", "add", code=2)

    def test_leases_and_release(self):
        lease = self.allocate(bytes=2 * lib.MIB, label="mine")
        out, _ = self.ctl("lease", "list", token=A)
        self.assertIn(lease.id, out)
        self.assertIn("mine", out)
        self.assertEqual(self.json("lease", "list", token=B)["leases"], [])
        everyone = self.json("lease", "list", "--all")["leases"]
        self.assertEqual([l["id"] for l in everyone], [lease.id])
        more = [self.allocate(bytes=4096).id for _ in range(2)]
        paged = self.json("lease", "list", "--page-size", "1", token=A)
        self.assertEqual(sorted(l["id"] for l in paged["leases"]), sorted([lease.id] + more))
        self.assertEqual(paged["next_page_token"], "")
        self.assertEqual(len(self.json("lease", "list", "--all", "--page-size", "2")["leases"]), 3)
        for extra in more:
            self.ctl("release", extra, token=A)
        self.assertEqual(len(self.json("lease", "list", "--tenant", "bob")["leases"]), 0)
        out, _ = self.ctl("lease", "get", lease.id, token=A)
        self.assertTrue(out.startswith(f"lease {lease.id}  tenant alice  2 MiB in 1 run"))
        got = self.json("lease", "get", lease.id, token=A)
        self.assertEqual(got["runs"][0]["length"], str(2 * lib.MIB))
        renewed = self.json("lease", "renew", lease.id, "--ttl", "120s", token=A)
        self.assertEqual(renewed["ttl_seconds"], 120)
        out, _ = self.ctl("release", lease.id, token=A)
        self.assertEqual(out, f"{lease.id} released\n")
        self.assertEqual(self.json("release", lease.id, token=A), {"released": False})
        other = self.allocate(bytes=4096)
        out, _ = self.ctl("lease", "revoke", other.id, "--reason", "cli")
        self.assertTrue(out.startswith("revoked:"))
        # Error classes and their exit codes.
        self.ctl("lease", "get", "l-nope", token=A, code=5)
        self.ctl("lease", "get", other.id, token=A, code=5)  # ended: not found
        mine = self.allocate(bytes=4096)
        self.ctl("lease", "get", mine.id, token=B, code=4)   # someone else's
        self.ctl("lease", "list", "--all", token=A, code=4)  # not admin
        self.ctl("pool", "status", token="wrong", code=4)
        self.ctl("lease", "get", code=2)
        self.ctl("pool", "status", "--bogus", code=2)
        self.ctl("pool", "status", "-o", "xml", code=2)
        self.ctl("--endpoint", "unix:/nonexistent.sock", "health", code=3)
        self.ctl("alloc", "--bytes", "1TiB", code=6)

    def test_tenants(self):
        out, _ = self.ctl("tenant", "list")
        self.assertEqual([l.split()[0] for l in out.splitlines()],
                         ["NAME", "alice", "bob", "root"])
        t = self.json("tenant", "set-limits", "bob", "--max-bytes", "1MiB",
                      "--max-leases", "3")["tenant"]
        self.assertEqual(t["limits"]["max_bytes"], str(lib.MIB))
        out, _ = self.ctl("tenant", "set-limits", "bob", "--max-leases", "0")
        self.assertEqual(out, "tenant bob: max unlimited bytes, max unlimited leases\n")
        self.ctl("tenant", "set-limits", "eve", code=5)
        self.ctl("tenant", "list", token=B, code=4)

    def test_alloc_holds_until_interrupted_and_watch_streams(self):
        watch = subprocess.Popen([CTL, "watch", "--timeout", "20s"], env=dict(
            self.env, PHYSPOOL_TOKEN=A), stdout=subprocess.PIPE, text=True)
        self.assertTrue(watch.stdout.readline().startswith("TIME"))
        alloc = subprocess.Popen([CTL, "alloc", "--bytes", "3MiB", "--alignment", "1MiB",
                                  "--max-segments", "1", "--hold"],
                                 env=dict(self.env, PHYSPOOL_TOKEN=A),
                                 stdout=subprocess.PIPE, text=True)
        first = alloc.stdout.readline()
        self.assertTrue(first.startswith("lease l-"), first)
        lease_id = first.split()[1]
        self.assertEqual(first.split()[-2], "request")
        self.assertRegex(first.split()[-1], REQUEST_ID)
        for line in alloc.stdout:
            if line.startswith("holding it"):
                break
        self.assertEqual([l["id"] for l in self.json("lease", "list", token=A)["leases"]],
                         [lease_id])
        alloc.send_signal(signal.SIGINT)
        self.assertEqual(alloc.wait(timeout=10), 0)
        self.assertEqual(self.json("lease", "list", token=A)["leases"], [])
        # A revoked lease shows up on the watch stream.
        lease = self.allocate(bytes=4096)
        self.ctl("lease", "revoke", lease.id, "--reason", "test")
        line = watch.stdout.readline()
        self.assertIn("REVOKED", line)
        self.assertIn(lease.id, line)
        watch.send_signal(signal.SIGINT)
        self.assertEqual(watch.wait(timeout=10), 0)
        watch.stdout.close()
        alloc.stdout.close()
        # Waiting that runs out: DEADLINE_EXCEEDED, exit 7.
        self.allocate(bytes=24 * lib.MIB, may_wait=True)
        self.ctl("alloc", "--bytes", "4KiB", "--wait", "500ms", code=7)

    def test_a_killed_tenant_gets_its_memory_back_within_ttl_plus_1s(self):
        ttl = 2
        events = self.d.watch(A, timeout=30)
        holder = subprocess.Popen([CTL, "alloc", "--bytes", "4MiB", "--ttl", f"{ttl}s", "--hold"],
                                  env=dict(self.env, PHYSPOOL_TOKEN=A),
                                  stdout=subprocess.PIPE, text=True)
        lease_id = holder.stdout.readline().split()[1]
        time.sleep(ttl * 1.5)  # renewed in the background meanwhile
        self.assertEqual([l["id"] for l in self.json("lease", "list", token=A)["leases"]],
                         [lease_id])
        holder.kill()  # SIGKILL: no release, no more renewals
        killed = time.time()
        holder.wait()
        holder.stdout.close()
        for event in events:
            if event.kind == pb.LeaseEvent.EXPIRED and event.lease_id == lease_id:
                break
        expired_after = time.time() - killed
        while self.json("pool", "status")["scrubbing_bytes"] != "0":
            time.sleep(0.01)
        back_after = time.time() - killed
        events.cancel()
        print(f"killed tenant: lease expired {expired_after:.2f} s and memory back "
              f"{back_after:.2f} s after the kill (TTL {ttl} s)", file=sys.stderr)
        self.assertLessEqual(back_after, ttl + 1)
        self.assertEqual(int(self.json("pool", "status")["free_bytes"]), 24 * lib.MIB)

    def test_alloc_request_id_is_the_leases(self):
        """The id alloc prints is the one the daemon keeps on the lease;
        needs the daemon's request ids (issue 11 server side)."""
        alloc = subprocess.Popen([CTL, "alloc", "--bytes", "4KiB", "--hold"],
                                 env=dict(self.env, PHYSPOOL_TOKEN=A),
                                 stdout=subprocess.PIPE, text=True)
        first = alloc.stdout.readline()
        lease_id, request_id = first.split()[1], first.split()[-1]
        self.assertRegex(request_id, REQUEST_ID)
        kept = self.json("lease", "get", lease_id, token=A)
        alloc.send_signal(signal.SIGINT)
        self.assertEqual(alloc.wait(timeout=10), 0)
        alloc.stdout.close()
        self.assertEqual(kept["request_id"], request_id)

    def test_alloc_returns_once_granted_and_the_lease_lives_on(self):
        out, _ = self.ctl("alloc", "--bytes", "2MiB", "--ttl", "60s", token=A)
        first = out.splitlines()[0]
        self.assertTrue(first.startswith("lease l-"), out)
        lease_id = first.split()[1]
        self.assertIn("granted: it lives until its TTL runs out", out)
        # The process is gone; the lease is not.
        live = self.json("lease", "list", token=A)["leases"]
        self.assertEqual([l["id"] for l in live], [lease_id])
        self.assertEqual(live[0]["ttl_seconds"], 60)
        self.assertEqual(live[0]["label"], "physpoolctl alloc")
        got = self.json("alloc", "--bytes", "4KiB", "--label", "second", token=A)
        self.assertEqual(got["label"], "second")
        self.assertRegex(got["request_id"], REQUEST_ID)
        out, _ = self.ctl("release", lease_id, token=A)
        self.assertEqual(out, f"{lease_id} released\n")
        self.ctl("release", got["id"], token=A)
        self.assertEqual(self.json("lease", "list", token=A)["leases"], [])

    def test_yaml_is_the_json_document(self):
        yaml = __import__("yaml")
        self.allocate(bytes=lib.MIB)
        for cmd in [("pool", "status"), ("lease", "list", "--all"), ("tenant", "list"),
                    ("segment", "list"), ("health",)]:
            out, _ = self.ctl(*cmd, "-o", "yaml")
            self.assertEqual(yaml.safe_load(out), self.json(*cmd), cmd)
        # Strings that YAML would read as numbers or booleans stay strings.
        status = yaml.safe_load(self.ctl("pool", "status", "-o", "yaml")[0])
        self.assertIsInstance(status["free_bytes"], str)

    def test_help_everywhere(self):
        out, _ = self.ctl("--help")
        for cmd in ["pool status", "pool map", "segment list", "lease revoke",
                    "tenant set-limits", "alloc", "release", "watch", "health", "simulate"]:
            self.assertIn(cmd, out)
        for cmd in [["pool", "status"], ["pool", "map"], ["segment", "list"],
                    ["segment", "drain"], ["segment", "undrain"], ["segment", "add"],
                    ["segment", "remove"], ["lease", "list"], ["lease", "get"],
                    ["lease", "renew"], ["lease", "revoke"], ["tenant", "list"],
                    ["tenant", "set-limits"], ["alloc"], ["release"], ["watch"], ["health"]]:
            out, _ = self.ctl(*cmd, "--help")
            self.assertIn("physpoolctl " + " ".join(cmd), out)
            self.assertIn("Example: physpoolctl ", out)
            self.assertIn("Exit codes", out)
        for cmd in [["pool", "map"], ["segment", "list"], ["lease", "list"], ["tenant", "list"]]:
            out, _ = self.ctl(*cmd, "--help")
            self.assertIn("--page-size", out)


class FakeDaemonTest(unittest.TestCase):
    """physpoolctl against fake_physpool.FakePhyspool: every list is read to
    its last page, and alloc retries with one request id."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="physpool-cli-fake-")
        self.fake = FakePhyspool(pb, self.dir)
        self.env = dict(os.environ, PHYSPOOL_ENDPOINT="unix:" + self.fake.socket,
                        PHYSPOOL_TOKEN="x")

    def tearDown(self):
        self.fake.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def ctl(self, *args, code=0):
        r = run_ctl(self.env, *args)
        self.assertEqual(r.returncode, code, f"{args}: {r.stdout}{r.stderr}")
        return r.stdout, r.stderr

    def json(self, *args):
        return json.loads(self.ctl(*args, "-o", "json")[0])

    def test_every_list_is_read_to_its_last_page(self):
        ids = [l.id for l in self.fake.leases]
        out, _ = self.ctl("lease", "list")
        self.assertEqual([l.split()[0] for l in out.splitlines()[1:]], ids)
        listed = self.json("lease", "list")
        self.assertEqual([l["id"] for l in listed["leases"]], ids)
        self.assertEqual(listed["next_page_token"], "")
        self.assertEqual([r[2] for r in self.fake.pages_of("ListLeases")][-3:],
                         ["", "page-2", "page-4"])
        self.assertEqual([l["id"] for l in self.json("lease", "list", "--all")["leases"]], ids)
        self.assertEqual(len(self.json("lease", "list", "--tenant", "alice")["leases"]), 5)
        out, _ = self.ctl("tenant", "list")
        self.assertEqual([l.split()[0] for l in out.splitlines()],
                         ["NAME", "alice", "bob", "root"])
        self.assertEqual(len(self.json("tenant", "list")["tenants"]), 3)
        out, _ = self.ctl("segment", "list")
        self.assertEqual([l.split()[0] for l in out.splitlines()], ["ID", "0", "1", "2"])
        # --page-size goes to every request of the command.
        before = len(self.fake.pages_of("ListSegments"))
        self.assertEqual(len(self.json("segment", "list", "--page-size", "1")["segments"]), 3)
        sizes = [r[1] for r in self.fake.pages_of("ListSegments")[before:]]
        self.assertEqual(sizes, [1, 1, 1])
        for bad in ["-1", "x", ""]:
            self.ctl("lease", "list", "--page-size", bad, code=2)
        self.ctl("pool", "status", "--page-size", "3", code=2)  # not a list

    def test_occupancy_segments_continue_across_pages(self):
        # Pages of 2 runs: segment 0's third run is on page 2, before segment 1.
        occ = self.json("pool", "map")
        self.assertEqual([s["segment"]["id"] for s in occ["segments"]], [0, 1])
        self.assertEqual([r["state"] for r in occ["segments"][0]["runs"]],
                         ["USED", "PREEMPTIBLE", "FREE"])
        self.assertEqual(occ["next_page_token"], "")
        self.assertEqual(len(self.fake.pages_of("GetOccupancy")), 2)
        out, _ = self.ctl("pool", "map", "--width", "16", "--ascii", "--page-size", "1")
        self.assertEqual([r[1] for r in self.fake.pages_of("GetOccupancy")[-4:]], [1] * 4)
        self.assertEqual(out, "\n".join([
            "segment 0  0x100000000  16 MiB  freelist 0  numa 0  (1 cell = 256 KiB)",
            "################",
            "################",
            "PPPP............",
            "................",
            "segment 1  0x101000000  8 MiB  freelist 1  numa 1  (1 cell = 128 KiB)",
            "................",
            "................",
            "................",
            "................",
            "legend: # used  P preemptible  ~ scrubbing  . free", ""]))

    def test_a_daemon_that_repeats_its_page_token_is_an_error(self):
        self.fake.repeat_token = True
        r = run_ctl(self.env, "lease", "list", timeout=20)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("Error: INTERNAL: the daemon answered page token", r.stderr)
        self.assertIn("a second time", r.stderr)

    def test_alloc_retries_with_one_request_id(self):
        # UNAVAILABLE, then no answer within --timeout, then a lease.
        self.fake.allocate_script = ["unavailable", "hang", "ok"]
        alloc = subprocess.Popen([CTL, "--timeout", "1s", "alloc", "--bytes", "4KiB", "--hold"],
                                 env=self.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        first = alloc.stdout.readline()
        self.assertTrue(first.startswith("lease l-fake"), first)
        printed = first.split()[-1]
        self.assertRegex(printed, REQUEST_ID)
        self.assertEqual(self.fake.attempts, [printed] * 3)
        for line in alloc.stdout:
            if line.startswith("holding it"):
                break
        alloc.send_signal(signal.SIGINT)
        self.assertEqual(alloc.wait(timeout=10), 0)
        err = alloc.stderr.read()
        alloc.stdout.close()
        alloc.stderr.close()
        self.assertEqual(self.fake.released, [first.split()[1]])
        notes = [l for l in err.splitlines() if l.startswith("physpoolctl: alloc attempt")]
        self.assertEqual(len(notes), 2, err)
        self.assertIn("attempt 1: UNAVAILABLE: fake: going away", notes[0])
        self.assertIn("attempt 2: DEADLINE_EXCEEDED", notes[1])
        self.assertTrue(all(printed in n for n in notes), notes)
        # Another invocation, another id.
        self.fake.attempts.clear()
        self.fake.allocate_script = ["ok"]
        alloc = subprocess.Popen([CTL, "alloc", "--bytes", "4KiB", "--hold"], env=self.env,
                                 stdout=subprocess.PIPE, text=True)
        second = alloc.stdout.readline().split()[-1]
        alloc.send_signal(signal.SIGINT)
        self.assertEqual(alloc.wait(timeout=10), 0)
        alloc.stdout.close()
        self.assertRegex(second, REQUEST_ID)
        self.assertNotEqual(second, printed)

    def test_alloc_gives_up_after_five_attempts(self):
        self.fake.allocate_script = ["unavailable"]
        r = run_ctl(self.env, "alloc", "--bytes", "4KiB")
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(len(self.fake.attempts), 5)
        self.assertEqual(len(set(self.fake.attempts)), 1)
        last = r.stderr.splitlines()[-1]
        self.assertTrue(last.startswith("Error: UNAVAILABLE: fake: going away"), last)
        self.assertIn(f"(Allocate request_id {self.fake.attempts[0]}: 5 attempts in ", last)

    def test_a_waiting_alloc_is_not_waited_twice(self):
        self.fake.allocate_script = ["hang"]
        r = run_ctl(self.env, "--timeout", "300ms", "alloc", "--bytes", "4KiB",
                    "--wait", "200ms")
        self.assertEqual(r.returncode, 7, r.stderr)  # DEADLINE_EXCEEDED
        self.assertEqual(len(self.fake.attempts), 1)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
