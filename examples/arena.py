#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""An arena: one lease, then many buffers placed in this process without an
RPC each, aligned and bounded in IOVA space, written through numpy views.

usage: examples/arena.py [SOCKET] [BUFFERS]   (run `make python` first)

Needs the installed package (build/venv/bin/python examples/arena.py) and
python3-numpy; the endpoint and token, if not given, come from
$PHYSPOOL_ENDPOINT and $PHYSPOOL_TOKEN.
"""
import sys
from typing import List

import numpy

import physpool


def on_lost(loss: physpool.ArenaLoss) -> None:
    # The library's event thread: stop the device's DMA into these buffers
    # before returning; their memory is unmapped right after.
    print(f"lease {loss.lease_id} {loss.kind}: buffers {list(loss.buffers)} are gone")


def main() -> None:
    endpoint = "unix:" + sys.argv[1] if len(sys.argv) > 1 else None
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    with physpool.connect(endpoint) as client, \
            client.arena(4 << 20, max_bytes=8 << 20, on_lost=on_lost, label="arena-example") as arena:
        buffers: List[physpool.Buffer] = []
        for i in range(count):
            # A 12 KiB descriptor ring that must not cross 64 KiB (IOVA).
            buf = arena.allocate(12 << 10, alignment=4096, boundary=64 << 10)
            assert buf.iova // (64 << 10) == (buf.iova + buf.bytes - 1) // (64 << 10)
            words = numpy.frombuffer(buf.memory, dtype=numpy.uint32)
            words[:] = i  # what the device would read at buf.iova
            del words  # views over the memory go before the buffer does
            buffers.append(buf)
            print(f"buffer {i}: iova 0x{buf.iova:x} {buf.bytes} bytes")
        for i, buf in enumerate(buffers):
            assert (numpy.frombuffer(buf.memory, dtype=numpy.uint32) == i).all()
            buf.free()
    print("arena: ok")


if __name__ == "__main__":
    try:
        main()
    except physpool.Error as e:
        sys.exit(f"arena.py: {e}")
