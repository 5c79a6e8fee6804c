#!/usr/bin/python3
"""Allocates a DMA region from a running physpoold (embedded default: no
token needed), maps the lease's own view (from the fd socket), writes to
it, prints its IOVAs.

usage: examples/allocate.py [SOCKET] [BYTES]   (run `make build` first)
"""
import mmap
import os
import socket
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
    pool_info = channel.unary_unary("/physpool.v1.Pool/GetPoolInfo",
                                    request_serializer=pb.GetPoolInfoRequest.SerializeToString,
                                    response_deserializer=pb.GetPoolInfoResponse.FromString)
    info = pool_info(pb.GetPoolInfoRequest(), timeout=10)
    lease = allocate(pb.AllocateRequest(bytes=size, alignment=65536, max_segments=1,
                                        label="example"), timeout=10).lease
    print(f"lease {lease.id}: {lease.bytes} bytes, path {lease.path}, ttl {lease.ttl_seconds}s")
    # The lease's memory: its own view from the fd socket (docs/vfio.md),
    # "ok 1 0:<offset of run 0> 0:<offset of run 1> ...".
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(info.fd_socket)
        s.sendall(f"backing {lease.id}\n".encode())
        msg, fds, _, _ = socket.recv_fds(s, 1 << 16, 16)
    words = msg.decode().split()
    if words[0] != "ok":
        raise SystemExit(f"fd socket: {msg.decode().strip()}")
    for run, where in zip(lease.runs, words[2:]):
        index, offset = (int(x) for x in where.split(":"))
        m = mmap.mmap(fds[index], run.length, offset=offset)
        m[:5] = b"hello"
        m.close()
        print(f"  iova 0x{run.iova:x} +{run.length}  at {offset} of the lease's view")
    for fd in fds:
        os.close(fd)
    release(pb.ReleaseRequest(lease_id=lease.id), timeout=10)
    print("released (the memory is zeroed before anyone else gets it)")


if __name__ == "__main__":
    main()
