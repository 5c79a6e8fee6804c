#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""`--version` of the four binaries and the build info behind it
(docs/operations.md, "Versions").

Each binary prints one line, "NAME VERSION (revision REV, built YYYY-MM-DD)",
exits 0 and does nothing else: no configuration read, no flag checked, no
socket. cmake/BuildInfo.cmake (run at build time) reports the checkout's
revision, and "unknown" outside a git checkout; it rewrites its output only
when that changes.

usage: version_test.py VERSION SOURCE_DIR PHYSPOOLD PHYSPOOLCTL KEEPER DRA
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

VERSION, SRC = sys.argv[1], sys.argv[2]
BINARIES = dict(zip(["physpoold", "physpoolctl", "physpool-keeper", "physpool-dra"],
                    sys.argv[3:7]))
LINE = re.compile(r"^(?P<name>[a-z-]+) (?P<version>\d+\.\d+\.\d+) "
                  r"\(revision (?P<revision>[0-9a-f]{4,40}|unknown), "
                  r"built (?P<date>\d{4}-\d{2}-\d{2})\)\n$")


def run(*argv, env=None, timeout=20):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


class VersionTest(unittest.TestCase):
    def version(self, name, *extra, env=None):
        r = run(BINARIES[name], *extra, env=env)
        self.assertEqual(r.returncode, 0, f"{name} --version: {r.stdout}{r.stderr}")
        self.assertEqual(r.stderr, "", f"{name} --version wrote to stderr")
        m = LINE.match(r.stdout)
        self.assertIsNotNone(m, f"{name} --version printed {r.stdout!r}")
        self.assertEqual(m["name"], name)
        self.assertEqual(m["version"], VERSION)
        return m

    def test_every_binary_says_the_same_build(self):
        seen = {name: self.version(name, "--version") for name in BINARIES}
        builds = {(m["version"], m["revision"], m["date"]) for m in seen.values()}
        self.assertEqual(len(builds), 1, f"the binaries disagree: {builds}")
        print("".join(f"  {m.string}" for m in seen.values()), end="")

    def test_before_anything_else(self):
        """No config, no environment, flags that would fail: still 0."""
        empty = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.version("physpoold", "--config", "/nonexistent/physpool.yaml", "--version")
        self.version("physpoold", "--no-such-flag", "--version")
        self.version("physpoolctl", "--endpoint", "unix:/nonexistent.sock", "--version")
        self.version("physpoolctl", "pool", "status", "--version")
        self.version("physpool-keeper", "--version")  # no --socket
        self.version("physpool-dra", "--version", env=empty)  # no NODE_NAME, no API server

    def test_keeper_passes_version_after_dashdash_to_its_command(self):
        d = tempfile.mkdtemp(prefix="physpool-version-")
        try:
            r = run(BINARIES["physpool-keeper"], "--socket", f"{d}/k.sock",
                    "--", "/usr/bin/printf", "%s\n", "--version")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(r.stdout, "--version\n")  # the child's output
        finally:
            shutil.rmtree(d)


class BuildInfoScriptTest(unittest.TestCase):
    """cmake/BuildInfo.cmake as the build runs it."""

    def generate(self, source_dir, out, *defs):
        r = run("cmake", f"-DSOURCE_DIR={source_dir}", f"-DOUT={out}",
                f"-DGIT={shutil.which('git') or ''}", *defs,
                "-P", os.path.join(SRC, "cmake", "BuildInfo.cmake"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(out) as f:
            return re.search(r'kPhysPoolBuildRevision\[\] = "([^"]*)"', f.read())[1]

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="physpool-buildinfo-")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def test_outside_a_checkout_unknown(self):
        tree = os.path.join(self.dir, "tarball")
        os.mkdir(tree)
        self.assertEqual(self.generate(tree, f"{self.dir}/a.cc"), "unknown")

    def test_explicit_revision(self):
        tree = os.path.join(self.dir, "tarball")
        os.mkdir(tree)
        self.assertEqual(self.generate(tree, f"{self.dir}/a.cc", "-DREVISION=abc1234"),
                         "abc1234")
        self.assertEqual(self.generate(tree, f"{self.dir}/b.cc", "-DREVISION=a b\";"),
                         "unknown")

    def test_checkout_head_and_rewritten_only_on_change(self):
        git = shutil.which("git")
        head = run(git, "-C", SRC, "rev-parse", "--short", "HEAD") if git else None
        if head is None or head.returncode != 0:
            self.skipTest("the source tree is not a git checkout")
        out = f"{self.dir}/rev.cc"
        self.assertEqual(self.generate(SRC, out), head.stdout.strip())
        os.utime(out, (1000000000, 1000000000))
        self.generate(SRC, out)
        self.assertEqual(os.stat(out).st_mtime, 1000000000, "rewritten unchanged")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
