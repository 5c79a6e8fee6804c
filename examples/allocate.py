#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Allocates a DMA region from a running physpoold (embedded default: no
token needed) with the physpool package, writes to its memory, prints its
IOVAs, releases it.

usage: examples/allocate.py [SOCKET] [BYTES]   (run `make build` first)

Uses the installed package (`make python`: build/venv/bin/python) if it is
there; else the package from this checkout (python/) over the library of
`make build` (build/client/libphyspool-client.so.0, through
$PHYSPOOL_CLIENT_LIBRARY unless that is set already), so that
/usr/bin/python3 runs it too. The endpoint and token, if not given, come
from $PHYSPOOL_ENDPOINT and $PHYSPOOL_TOKEN as for the C++ client.
"""
import os
import sys

try:
    import physpool
except ImportError:  # not installed: the checkout's package and library
    ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(ROOT, "python"))
    os.environ.setdefault("PHYSPOOL_CLIENT_LIBRARY",
                          os.path.join(ROOT, "build/client/libphyspool-client.so.0"))
    import physpool


def main() -> None:
    endpoint = "unix:" + sys.argv[1] if len(sys.argv) > 1 else None
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20
    with physpool.connect(endpoint) as client:
        with client.allocate(size, alignment=65536, max_segments=1, label="example") as region:
            print(f"lease {region.lease_id}: {region.bytes} bytes, tenant {client.tenant},"
                  f" request {region.request_id}")
            for run in region.runs:
                run.memory[:5] = b"hello"  # the lease's own view, mapped here
                assert bytes(run.memory[:5]) == b"hello"
                print(f"  iova 0x{run.iova:x} +{run.bytes}")
    print("released (the memory is zeroed before anyone else gets it)")


if __name__ == "__main__":
    try:
        main()
    except physpool.Error as e:
        sys.exit(f"allocate.py: {e}")
