#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a deterministic `physpoolctl simulate` trace of steady-state churn.

usage: gen_trace.py OPS [GIB]   (default 64 GiB in 4 segments of 4 KiB pages)
Allocation sizes are log-uniform from one page to 64 MiB; a third of the
requests are aligned (up to 2 MiB), some carry a boundary or a window.
"""
import json
import math
import random
import sys


def main():
    ops = int(sys.argv[1])
    gib = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    rng = random.Random(42)
    page = 4096
    pages = gib << 18
    out = sys.stdout
    w = out.write
    w(json.dumps({"op": "pool", "page_size": page, "strategy": "address"}) + "\n")
    seg_pages = pages // 4
    for i in range(4):
        w(json.dumps({"op": "segment", "iova": (1 << 32) + i * (seg_pages + 512) * page,
                      "pages": seg_pages, "freelist": i // 3}) + "\n")
    live = []
    n = 0
    used = 0
    while n < ops:
        if used > pages * page * 0.85 and live:
            k = rng.randrange(len(live))
            live[k], live[-1] = live[-1], live[k]
            aid, size = live.pop()
            used -= size
            w('{"op":"free","id":"%s"}\n' % aid)
            n += 1
            continue
        size = int(math.exp(rng.uniform(0, math.log(16384)))) * page
        req = {"op": "alloc", "id": "a%d" % n, "bytes": size}
        r = rng.random()
        if r < 1 / 3:
            req["alignment"] = 1 << rng.randrange(13, 22)
            req["max_segments"] = 1
        elif r < 0.4:
            req["boundary"] = 1 << max(27, size.bit_length())
            req["max_segments"] = 1
        elif r < 0.45:
            req["low"] = 1 << 32
            req["high"] = (1 << 32) + pages * page // 2
        w(json.dumps(req, separators=(",", ":")) + "\n")
        live.append(("a%d" % n, size))
        used += size
        n += 1


if __name__ == "__main__":
    main()
