# SPDX-License-Identifier: Apache-2.0
"""A real physpoold for the package's tests: token-authenticated tenants,
sim memory, a lease store, all in one private temporary directory, and
restartable on the same store (SIGTERM, then start again).

Standard library only: the tests run in the fresh venv the package was
installed into, and import nothing but physpool (and numpy) besides.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional

TOKENS: Dict[str, str] = {"alice": "alice-token", "bob": "bob-token", "root": "root-token"}


class Daemon:
    """physpoold on a unix socket (no TCP, no metrics), tenants alice and
    bob (tenant) and root (admin), 16 + 8 MiB of sim memory."""

    def __init__(self, physpoold: str, physpoolctl: str) -> None:
        self.physpoold = physpoold
        self.physpoolctl = physpoolctl
        self.dir = tempfile.mkdtemp(prefix="physpool-pytest-")
        self.socket = os.path.join(self.dir, "physpool.sock")
        self.endpoint = "unix:" + self.socket
        self.config = os.path.join(self.dir, "physpoold.yaml")
        sha = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in TOKENS.items()}
        with open(self.config, "w") as f:
            f.write(f"""listen:
  unix: {self.socket}
  fd_socket: {self.socket}.fds
  tcp: ""
metrics:
  listen: ""
source:
  type: sim
  sim:
    dir: {self.dir}/sim
    segments:
      - {{bytes: 16777216, freelist: 0, numa: 0}}
      - {{bytes: 8388608, freelist: 1, numa: 1}}
leases:
  default_ttl_seconds: 30
  reclaim_grace_ms: 100
store:
  path: {self.dir}/leases.db
tenants:
  - {{name: alice, token_sha256: [{sha['alice']}], roles: [tenant]}}
  - {{name: bob, token_sha256: [{sha['bob']}], roles: [tenant]}}
  - {{name: root, token_sha256: [{sha['root']}], roles: [tenant, admin, privileged]}}
""")
        self.log_path = os.path.join(self.dir, "physpoold.log")
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        """Starts physpoold and waits until it is ready."""
        ready = os.path.join(self.dir, "ready.json")
        if os.path.exists(ready):
            os.unlink(ready)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([self.physpoold, "--config", self.config,
                                      "--ready-file", ready], stderr=log)
        log.close()
        for _ in range(400):
            if os.path.exists(ready):
                with open(ready) as f:
                    json.load(f)
                return
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError("physpoold exited: " + self.read_log())
            time.sleep(0.05)
        raise RuntimeError("physpoold not ready: " + self.read_log())

    def stop(self) -> int:
        """SIGTERM, and its exit code (the state directory stays)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = -1
        self.proc = None
        return code

    def restart(self) -> None:
        """SIGTERM, then start again on the same config and store."""
        code = self.stop()
        if code != 0:
            raise RuntimeError(f"physpoold exited {code}: " + self.read_log())
        self.start()

    def ctl(self, *args: str, token: str = TOKENS["root"]) -> str:
        """physpoolctl ARGS against this daemon; its stdout (fails loudly)."""
        cmd: List[str] = [self.physpoolctl, "--endpoint", self.endpoint, "--token", token,
                          *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: "
                               f"{done.stdout}{done.stderr}")
        return done.stdout

    def leases(self, tenant: str = "alice") -> List[Dict[str, Any]]:
        """The tenant's leases (physpoolctl -o json lease list)."""
        out = self.ctl("-o", "json", "lease", "list", token=TOKENS[tenant])
        leases: List[Dict[str, Any]] = json.loads(out).get("leases", [])
        return leases

    def segments(self) -> List[Dict[str, Any]]:
        """The daemon's segments (physpoolctl -o json segment list)."""
        segments: List[Dict[str, Any]] = json.loads(
            self.ctl("-o", "json", "segment", "list")).get("segments", [])
        return segments

    def read_log(self) -> str:
        """What physpoold wrote on stderr."""
        with open(self.log_path) as f:
            return f.read()

    def close(self) -> int:
        """Stops it (if running) and removes its directory; its exit code."""
        code = self.stop() if self.proc is not None else 0
        shutil.rmtree(self.dir, ignore_errors=True)
        return code
