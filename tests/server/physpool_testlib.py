"""Starts the real physpoold for Python tests and gives typed gRPC calls.

Uses Debian's /usr/bin/python3 with python3-grpcio and the message classes
that `protoc --python_out` generated into the build tree (passed on argv).
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import grpc

TOKENS = {"alice": "alice-token", "bob": "bob-token", "root": "root-token"}
MIB = 1 << 20


def load_protos(gen_dir):
    import sys
    sys.path.insert(0, gen_dir)
    from physpool.v1 import physpool_pb2  # noqa: E402
    return physpool_pb2


class Daemon:
    """physpoold on a unix socket, TCP port 0 and metrics port 0."""

    def __init__(self, physpoold, extra_yaml=""):
        self.dir = tempfile.mkdtemp(prefix="physpool-py-")
        self.socket = os.path.join(self.dir, "physpool.sock")
        sha = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in TOKENS.items()}
        config = f"""listen:
  unix: {self.socket}
  tcp: 127.0.0.1:0
metrics:
  listen: 127.0.0.1:0
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
{extra_yaml}"""
        path = os.path.join(self.dir, "physpoold.yaml")
        with open(path, "w") as f:
            f.write(config)
        ready = os.path.join(self.dir, "ready.json")
        self.log = open(os.path.join(self.dir, "physpoold.log"), "w")
        self.proc = subprocess.Popen([physpoold, "--config", path, "--ready-file", ready],
                                     stderr=self.log)
        for _ in range(400):
            if os.path.exists(ready):
                with open(ready) as f:
                    info = json.load(f)
                self.tcp_port = info["tcp_port"]
                self.metrics_port = info["metrics_port"]
                break
            if self.proc.poll() is not None:
                raise RuntimeError("physpoold exited: " + self.read_log())
            time.sleep(0.05)
        else:
            raise RuntimeError("physpoold not ready: " + self.read_log())
        self.channel = grpc.insecure_channel("unix:" + self.socket)

    def read_log(self):
        with open(os.path.join(self.dir, "physpoold.log")) as f:
            return f.read()

    def _invoke(self, kind, service, method, request, response_type, token, timeout):
        rpc = kind(f"/physpool.v1.{service}/{method}",
                   request_serializer=type(request).SerializeToString,
                   response_deserializer=response_type.FromString)
        metadata = [("authorization", "Bearer " + token)] if token else []
        return rpc(request, metadata=metadata, timeout=timeout)

    def call(self, service, method, request, response_type, token="", timeout=10):
        return self._invoke(self.channel.unary_unary, service, method, request,
                            response_type, token, timeout)

    def stream(self, service, method, request, response_type, token="", timeout=10):
        return self._invoke(self.channel.unary_stream, service, method, request,
                            response_type, token, timeout)

    def stop(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = -1
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return code
