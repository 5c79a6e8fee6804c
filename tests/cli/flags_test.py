#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The command lines of the four binaries (CLI11, docs/cli.md "Flags"):
--help per command exits 0 and prints to stdout; an unknown flag, a missing
or bad value, a missing argument or an unknown command exits 2 with the
flag's (or argument's) name on stderr, before anything is started.

usage: flags_test.py PHYSPOOLD PHYSPOOLCTL KEEPER DRA
"""
import os
import subprocess
import sys
import tempfile
import unittest

PHYSPOOLD, CTL, KEEPER, DRA = sys.argv[1:5]


def run(*argv, env=None):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, env=env)


class FlagsTest(unittest.TestCase):
    def usage_error(self, argv, name, env=None):
        r = run(*argv, env=env)
        self.assertEqual(r.returncode, 2, f"{argv}: {r.stdout}{r.stderr}")
        self.assertIn(name, r.stderr, f"{argv}: the error does not name {name}")
        self.assertEqual(r.stdout, "", f"{argv} printed on stdout")
        return r.stderr

    def help(self, argv, *words):
        r = run(*argv, "--help")
        self.assertEqual(r.returncode, 0, f"{argv} --help: {r.stderr}")
        self.assertEqual(r.stderr, "")
        for w in words:
            self.assertIn(w, r.stdout, f"{argv} --help lacks {w}")
        return r.stdout

    def test_physpoold(self):
        self.help([PHYSPOOLD], "Usage: physpoold", "--config", "--check-config",
                  "--log-level", "SIGHUP")
        self.usage_error([PHYSPOOLD, "--bogus"], "--bogus")
        self.usage_error([PHYSPOOLD, "--log-level", "loud"], "--log-level")
        self.usage_error([PHYSPOOLD, "--tcp"], "--tcp")
        self.usage_error([PHYSPOOLD, "--check-config", ""], "--check-config")
        self.usage_error([PHYSPOOLD, "--config", "a.yaml", "--check-config", "b.yaml"],
                         "--check-config")

    def test_keeper(self):
        self.help([KEEPER], "Usage: physpool-keeper", "--socket", "--watchdog-sec")
        with tempfile.TemporaryDirectory() as d:
            sock = os.path.join(d, "k.sock")
            self.usage_error([KEEPER], "--socket")
            self.usage_error([KEEPER, "--socket", sock, "--watchdog-sec", "-1"],
                             "--watchdog-sec")
            self.usage_error([KEEPER, "--socket", sock, "--start-timeout-sec", "x"],
                             "--start-timeout-sec")
            self.usage_error([KEEPER, "--socket", sock, "--bogus"], "--bogus")
            self.assertFalse(os.path.exists(sock), "a usage error started the keeper")

    def test_dra(self):
        self.help([DRA], "Usage: physpool-dra", "--node-name", "NODE_NAME", "--lease-ttl")
        self.usage_error([DRA, "--lease-ttl=0"], "--lease-ttl")
        self.usage_error([DRA, "--publish-interval", "soon"], "--publish-interval")
        self.usage_error([DRA, "--bogus=1"], "--bogus")
        env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
        self.usage_error([DRA], "NODE_NAME", env=env)  # no node name at all

    def test_physpoolctl_help_per_command(self):
        top = self.help([CTL], "Usage: physpoolctl", "Commands")
        commands = top[top.index("Commands"):].splitlines()[1:]
        commands = [c.strip() for c in commands if c.startswith("  ")]
        self.assertIn("pool status", commands)
        self.assertIn("simulate", commands)
        for c in commands:
            out = self.help([CTL, *c.split()], "physpoolctl " + c)
            self.assertEqual(run(CTL, "help", *c.split()).stdout, out, c)
        self.help([CTL, "pool"], "status", "map")  # a noun lists its verbs

    def test_physpoolctl_usage_errors(self):
        self.assertIn('unknown command "frob"', self.usage_error([CTL, "frob"], "frob"))
        self.assertIn('unknown command "pool frob"',
                      self.usage_error([CTL, "--endpoint", "unix:/x", "pool", "frob"], "frob"))
        self.usage_error([CTL, "pool"], "pool")  # a noun needs a verb
        self.usage_error([CTL, "pool", "status", "--bogus"], "--bogus")
        self.usage_error([CTL, "alloc", "--bytes", "1XB"], "--bytes")
        self.usage_error([CTL, "alloc"], "--bytes")  # required
        self.usage_error([CTL, "alloc", "--bytes", "4KiB", "--numa-strict"], "--numa")
        self.usage_error([CTL, "alloc", "--bytes", "4KiB", "--wait", "forever"], "--wait")
        self.usage_error([CTL, "pool", "map", "--width", "3"], "--width")
        self.usage_error([CTL, "lease", "list", "--page-size", "-1"], "--page-size")
        self.usage_error([CTL, "lease", "list", "--all", "--tenant", "x"], "--tenant")
        self.usage_error([CTL, "lease", "get"], "ID")
        self.usage_error([CTL, "release", "a", "b"], "b")
        self.usage_error([CTL, "-o", "xml", "health"], "--output")
        self.usage_error([CTL, "--timeout", "0s", "health"], "--timeout")
        self.usage_error([CTL, "segment", "drain", "two"], "ID")
        self.usage_error([CTL, "simulate"], "FILE")
        r = run(CTL)  # no command: the usage on stderr
        self.assertEqual(r.returncode, 2)
        self.assertIn("Usage: physpoolctl", r.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
