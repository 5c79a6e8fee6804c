# SPDX-License-Identifier: Apache-2.0
"""The attack suite's harness: the real physpoold, started and restarted on
one directory (its store, sim memory and sockets survive a stop), as root or
as another uid, with calls over its unix socket, TCP and the fd socket.

Run with Debian's /usr/bin/python3 (python3-grpcio, python3-yaml); argv:
PHYSPOOLD PYGEN [unittest args]. Needs root (other uids, chown): a test run
without it fails saying so.
"""
import array
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import grpc
import yaml

MIB = 1 << 20
TOKENS = {"alice": "alice-token", "bob": "bob-token", "root": "root-token"}
# Unprivileged uids of the tests: the daemon's, and two tenants'.
DAEMON_UID = 4241
TENANT_UID = 4243
OTHER_UID = 4244

PHYSPOOLD = ""
PB = None
HEALTH = None


def setup(argv):
    """Reads PHYSPOOLD and PYGEN off argv; returns the rest for unittest."""
    global PHYSPOOLD, PB, HEALTH
    if len(argv) < 3:
        sys.exit(f"usage: {argv[0]} PHYSPOOLD PYGEN [unittest args]")
    PHYSPOOLD = argv[1]
    sys.path.insert(0, argv[2])
    from physpool.v1 import physpool_pb2  # noqa: E402
    import health_pb2  # noqa: E402
    PB, HEALTH = physpool_pb2, health_pb2
    if os.geteuid() != 0:
        sys.exit("the attack suite needs root (it runs processes as other "
                 "uids); run it as root")
    return [argv[0]] + argv[3:]


# Every directory a Daemon made: at exit, any process still naming one in
# its command line (a daemon a keeper left behind, a test that failed half
# way) is killed, so that nothing outlives the suite.
_DIRS = []


def _kill_leftovers():
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if any(d in cmdline for d in _DIRS):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def main():
    import atexit
    atexit.register(_kill_leftovers)
    unittest.main(argv=setup(sys.argv), verbosity=2)


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


def base_config(d):
    """A config of the sim source in directory `d`: two segments, a store,
    tenants alice, bob (tenant role) and root (every role)."""
    return {
        "listen": {"unix": f"{d}/run/physpool.sock", "tcp": "127.0.0.1:0"},
        "metrics": {"listen": "127.0.0.1:0"},
        "source": {"type": "sim", "sim": {"dir": f"{d}/run/sim", "segments": [
            {"bytes": 16 * MIB, "freelist": 0, "numa": 0},
            {"bytes": 8 * MIB, "freelist": 0, "numa": 0}]}},
        "store": {"path": f"{d}/state/leases.db"},
        "leases": {"default_ttl_seconds": 60},
        "isolation": {"mode": "required", "scan_interval_ms": 100},
        "tenants": [
            {"name": "alice", "token_sha256": [sha(TOKENS["alice"])], "roles": ["tenant"]},
            {"name": "bob", "token_sha256": [sha(TOKENS["bob"])], "roles": ["tenant"]},
            {"name": "root", "token_sha256": [sha(TOKENS["root"])],
             "roles": ["tenant", "admin", "privileged"]},
        ],
    }


def as_uid(uid, gid=None):
    """preexec_fn that drops to uid (and gid, default the same), no groups."""
    gid = uid if gid is None else gid

    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return drop


class Daemon:
    """physpoold on a directory of its own. `config` is a dict (base_config
    by default), written as YAML on each start."""

    def __init__(self, config=None, uid=None, caps=(), wrapper=()):
        """uid: run as that uid (and gid), without groups; caps: with these
        ambient capabilities (e.g. "sys_ptrace"); wrapper: a command to run
        it under (e.g. unshare)."""
        self.dir = tempfile.mkdtemp(prefix="physpool-sec-")
        _DIRS.append(self.dir)
        os.chmod(self.dir, 0o755)
        self.config = config if config is not None else base_config(self.dir)
        self.uid = uid
        self.caps = list(caps)
        self.wrapper = list(wrapper)
        self.proc = None
        self.ready = {}
        self.log_path = os.path.join(self.dir, "physpoold.log")
        self.channels = []
        for sub in ("run", "state"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
            if uid is not None:
                os.chown(os.path.join(self.dir, sub), uid, uid)
                os.chmod(os.path.join(self.dir, sub), 0o755)

    @property
    def socket(self):
        return self.config["listen"]["unix"]

    @property
    def fd_socket(self):
        return self.config["listen"].get("fd_socket", self.socket + ".fds")

    @property
    def store(self):
        return self.config["store"]["path"]

    @property
    def ready_path(self):
        """--ready-file: in run/, which the daemon's uid may write."""
        return os.path.join(self.dir, "run", "ready.json")

    def config_path(self):
        return os.path.join(self.dir, "physpoold.yaml")

    def write_config(self):
        with open(self.config_path(), "w") as f:
            yaml.safe_dump(self.config, f)
        os.chmod(self.config_path(), 0o644)

    def spawn(self, args=(), env=None):
        """Starts physpoold (not waiting); returns the Popen."""
        self.write_config()
        ready = self.ready_path
        if os.path.exists(ready):
            os.unlink(ready)
        e = dict(os.environ)
        e.update(env or {})
        cmd = [PHYSPOOLD, "--config", self.config_path(), "--ready-file", ready, *args]
        preexec = as_uid(self.uid) if self.uid is not None else None
        if self.uid is not None and (self.caps or self.wrapper):
            # setpriv keeps ambient capabilities across the uid change, and
            # drops the uid inside the wrapper (unshare needs root).
            caps = ",".join("+" + c for c in self.caps)
            cmd = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}",
                   "--clear-groups",
                   *([f"--inh-caps={caps}", f"--ambient-caps={caps}"] if caps else []),
                   *cmd]
            preexec = None
        with open(self.log_path, "a") as log:
            return subprocess.Popen(self.wrapper + cmd, stderr=log, stdout=log, env=e,
                                    preexec_fn=preexec)

    def start(self, args=(), env=None, timeout=30):
        """Starts physpoold and waits until it serves."""
        if self.uid is not None:
            os.chmod(os.path.join(self.dir), 0o755)
        self.proc = self.spawn(args, env)
        ready = self.ready_path
        end = time.time() + timeout
        while time.time() < end:
            if os.path.exists(ready):
                with open(ready) as f:
                    self.ready = json.load(f)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"physpoold exited {self.proc.returncode}: "
                                   + self.log()[-3000:])
            time.sleep(0.02)
        raise RuntimeError("physpoold not ready: " + self.log()[-3000:])

    def start_fails(self, timeout=30):
        """Starts physpoold expecting it to refuse: (exit code, its log)."""
        mark = len(self.log())
        p = self.spawn()
        try:
            code = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError("physpoold started although it should refuse: "
                                 + self.log()[mark:])
        return code, self.log()[mark:]

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=15):
        for c in self.channels:
            c.close()
        self.channels = []
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- calls

    def channel(self, target=None):
        target = target or ("unix:" + self.socket)
        c = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", 8 * MIB)])
        self.channels.append(c)
        return c

    def tcp_target(self):
        return f"127.0.0.1:{self.ready['tcp_port']}"

    def call(self, method, request, token="", service=None, target=None, timeout=10):
        """A unary call: method is "Pool/Allocate" or "Admin/RevokeLease"."""
        service, name = method.split("/")
        resp_type = getattr(PB, RESPONSES.get(method, name + "Response"))
        rpc = self.channel(target).unary_unary(
            f"/physpool.v1.{service}/{name}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=resp_type.FromString)
        md = [("authorization", "Bearer " + token)] if token else []
        return rpc(request, metadata=md, timeout=timeout)

    def allocate(self, token, bytes_=MIB, **kw):
        return self.call("Pool/Allocate", PB.AllocateRequest(bytes=bytes_, **kw),
                         token).lease

    def release(self, token, lease_id):
        return self.call("Pool/Release", PB.ReleaseRequest(lease_id=lease_id), token)

    def get(self, token, lease_id):
        return self.call("Pool/GetLease", PB.GetLeaseRequest(lease_id=lease_id),
                         token).lease

    def health(self, target=None):
        rpc = self.channel(target).unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=HEALTH.HealthCheckRequest.SerializeToString,
            response_deserializer=HEALTH.HealthCheckResponse.FromString)
        return rpc(HEALTH.HealthCheckRequest(), timeout=5).status

    def metrics(self):
        import urllib.request
        url = f"http://127.0.0.1:{self.ready['metrics_port']}/metrics"
        return urllib.request.urlopen(url, timeout=5).read().decode()

    def metric(self, name):
        """The sum of the samples of `name` (a full name with labels, or a
        bare name: every series)."""
        total = None
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if key == name or key.split("{")[0] == name:
                total = (total or 0) + float(value)
        return total

    def backing(self, lease_id, token):
        """The fd socket's answer for a lease's view: (line, [fds])."""
        return fd_request(self.fd_socket, f"backing {lease_id} {token}\n")

    @staticmethod
    def fd_request(path, line):
        return fd_request(path, line)


RESPONSES = {
    "Admin/RemoveSegment": "RemoveSegmentResponse",
    "Admin/ListLeases": "ListLeasesResponse",
    "Admin/GetLease": "GetLeaseResponse",
    "Admin/DrainSegment": "SegmentResponse",
    "Admin/UndrainSegment": "SegmentResponse",
    "Admin/AddSegment": "SegmentResponse",
}


def fd_request(path, line, read=True):
    """One request on the fd socket: (answer line, received fds)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    try:
        s.sendall(line.encode())
    except BrokenPipeError:
        pass  # refused at once: the answer is there to read
    if not read:
        return s
    msg, fds, _, _ = socket.recv_fds(s, 4096, 16)
    s.close()
    return msg.decode(), fds


def code_of(call):
    """Runs call(); the grpc.StatusCode it failed with (OK if none)."""
    try:
        call()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def kill_uid(uid):
    """SIGKILL to every process of `uid` (a test's tenants and workers)."""
    subprocess.run(["pkill", "-KILL", "-u", str(uid)], check=False)


def private_dir(parent, name, uid):
    """A directory `uid` may write (ready files of its tools)."""
    path = os.path.join(parent, name)
    os.makedirs(path, exist_ok=True)
    os.chown(path, uid, uid)
    return path


def wait_until(pred, timeout=10, step=0.05, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tenant_tool.py")


def tool(uid, *args, env=None, background=False):
    """tenant_tool.py as `uid` (None: this process's): its parsed JSON
    output, or the Popen if `background`."""
    pygen = os.path.dirname(os.path.dirname(os.path.dirname(PB.__file__)))
    cmd = ["/usr/bin/python3", TOOL, pygen, *[str(a) for a in args]]
    kw = {"preexec_fn": as_uid(uid) if uid is not None else None, "env": env}
    if background:
        # Its children may outlive it: they must not hold the test's output.
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, **kw)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
    if out.returncode != 0:
        raise AssertionError(f"tenant_tool {args[0]} failed: {out.stderr}")
    return json.loads(out.stdout)


def quarantine_of(d, lease_id):
    """An ended lease's Quarantine (Admin.GetLease), or None once its memory
    is back (NOT_FOUND)."""
    try:
        lease = d.call("Admin/GetLease", PB.GetLeaseRequest(lease_id=lease_id),
                       TOKENS["root"]).lease
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    return lease.quarantine if lease.HasField("quarantine") else None
