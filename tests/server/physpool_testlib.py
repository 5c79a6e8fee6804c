# SPDX-License-Identifier: Apache-2.0
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
# Set explicitly on every channel, as physpool's clients do: the daemon's
# answers are at most 4 MiB (lists page), requests small.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 8 * MIB),
                   ("grpc.max_send_message_length", MIB)]


def channel(target):
    """An insecure channel with physpool's message-size options."""
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


_PB = []


def load_protos(gen_dir):
    import sys
    sys.path.insert(0, gen_dir)
    from physpool.v1 import physpool_pb2  # noqa: E402
    _PB[:] = [physpool_pb2]
    return physpool_pb2


def _pb():
    if not _PB:
        raise RuntimeError("call load_protos first")
    return _PB[0]


class Daemon:
    """physpoold on a unix socket, TCP port 0 and metrics port 0; `args`
    are more flags. stop() leaves its stderr, as bytes, in final_log."""

    def __init__(self, physpoold, extra_yaml="", args=()):
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
        self.proc = subprocess.Popen([physpoold, "--config", path, "--ready-file", ready,
                                      *args], stderr=self.log)
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
        self.channel = channel("unix:" + self.socket)

    def read_log(self):
        with open(os.path.join(self.dir, "physpoold.log"), errors="replace") as f:
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

    def watch(self, token, timeout=30):
        """A Watch stream that is live: the daemon sends the initial
        metadata once the subscription is in place, so no event after this
        returns is missed."""
        pb = _pb()
        events = self.stream("Pool", "Watch", pb.WatchRequest(), pb.LeaseEvent, token, timeout)
        events.initial_metadata()  # blocks until it arrives (or the call ends)
        return events

    def list_all(self, service, method, request, response_type, field, token="",
                 page_size=0, pages=None):
        """Every item of a paged list (AIP-158): asks for page after page,
        passing next_page_token on, until it is "". `pages`, if a list,
        gets each raw page."""
        req = type(request)()
        req.CopyFrom(request)
        if page_size:
            req.page_size = page_size
        items = []
        while True:
            page = self.call(service, method, req, response_type, token)
            if pages is not None:
                pages.append(page)
            items.extend(getattr(page, field))
            if not page.next_page_token:
                return items
            if page.next_page_token == req.page_token:
                raise AssertionError(f"{method}: the same page token again")
            req.page_token = page.next_page_token

    def occupancy(self, token, segment_id=None, page_size=0, pages=None):
        """GetOccupancy over all its pages, a segment that continues on the
        next page merged into one: [SegmentOccupancy]."""
        pb = _pb()
        req = pb.OccupancyRequest() if segment_id is None else pb.OccupancyRequest(
            segment_id=segment_id)
        merged = []
        for so in self.list_all("Admin", "GetOccupancy", req, pb.OccupancyResponse,
                                "segments", token, page_size, pages):
            if merged and merged[-1].segment.id == so.segment.id:
                merged[-1].runs.extend(so.runs)
            else:
                copy = pb.SegmentOccupancy()
                copy.CopyFrom(so)
                merged.append(copy)
        return merged

    def stop(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = -1
        self.log.close()
        with open(os.path.join(self.dir, "physpoold.log"), "rb") as f:
            self.final_log = f.read()
        shutil.rmtree(self.dir, ignore_errors=True)
        return code
