#!/usr/bin/python3
"""Allocates a DMA region from a running physpoold (embedded default: no
token needed), writes to it through its backing file, prints its IOVAs.

usage: examples/allocate.py [SOCKET] [BYTES]   (run `make build` first)
"""
import mmap
import os
import sys

import grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "build/tests/server/pygen"))
from physpool.v1 import physpool_pb2 as pb  # noqa: E402


def default_socket():
    if os.geteuid() == 0:
        return "/run/physpool/physpool.sock"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return f"{xdg}/physpool/physpool.sock" if xdg else f"/tmp/physpool-{os.geteuid()}/physpool.sock"


def main():
    sock = sys.argv[1] if len(sys.argv) > 1 else default_socket()
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20
    # Message sizes set explicitly, as physpool's clients do: the daemon's
    # answers are at most 4 MiB.
    channel = grpc.insecure_channel("unix:" + sock, options=[
        ("grpc.max_receive_message_length", 8 << 20),
        ("grpc.max_send_message_length", 1 << 20)])
    allocate = channel.unary_unary("/physpool.v1.Pool/Allocate",
                                   request_serializer=pb.AllocateRequest.SerializeToString,
                                   response_deserializer=pb.AllocateResponse.FromString)
    release = channel.unary_unary("/physpool.v1.Pool/Release",
                                  request_serializer=pb.ReleaseRequest.SerializeToString,
                                  response_deserializer=pb.ReleaseResponse.FromString)
    lease = allocate(pb.AllocateRequest(bytes=size, alignment=65536, max_segments=1,
                                        label="example"), timeout=10).lease
    print(f"lease {lease.id}: {lease.bytes} bytes, path {lease.path}, ttl {lease.ttl_seconds}s")
    for run in lease.runs:
        with open(run.backing_path, "r+b") as f:
            m = mmap.mmap(f.fileno(), run.length, offset=run.backing_offset)
            m[:5] = b"hello"
            m.close()
        print(f"  iova 0x{run.iova:x} +{run.length}  backing {run.backing_path} @ {run.backing_offset}")
    release(pb.ReleaseRequest(lease_id=lease.id), timeout=10)
    print("released (the memory is zeroed before anyone else gets it)")


if __name__ == "__main__":
    main()
