#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A client that uses every public name of the package with types, for
mypy --strict (python_package_test.sh) and run against the daemon
(package_test.py; $PHYSPOOL_ENDPOINT and $PHYSPOOL_TOKEN)."""

import sys
from typing import List, Optional, Tuple

import numpy
import numpy.typing

import physpool


def fill(run: physpool.Run, value: int) -> "numpy.typing.NDArray[numpy.uint8]":
    view = numpy.frombuffer(run.memory, dtype=numpy.uint8)
    view[:] = value
    return view


def main() -> None:
    revocations: List[physpool.Revocation] = []
    losses: List[physpool.ArenaLoss] = []
    on_revoked: physpool.RevokedCallback = revocations.append
    on_lost: physpool.LostCallback = losses.append
    client: physpool.Client = physpool.connect(timeout=5.0)
    with client:
        tenant: str = client.tenant
        page: int = client.page_size
        region: physpool.Region
        with client.allocate(4 * page, alignment=page, max_segments=1, numa_node=None,
                             ttl=30, label="typed", on_revoked=on_revoked) as region:
            runs: Tuple[physpool.Run, ...] = region.runs
            total = 0
            for run in runs:
                total += int(fill(run, 7).sum())
            assert total == 7 * region.bytes
            revocation: Optional[physpool.Revocation] = region.revocation
            assert revocation is None and not region.revoked
            ids: Tuple[str, str] = (region.lease_id, region.request_id)
        arena: physpool.Arena = client.arena(16 * page, on_lost=on_lost, idle_release=1.0)
        with arena:
            buf: physpool.Buffer = arena.allocate(page, alignment=page)
            with buf:
                buf.memory[:1] = b"x"
                iova: int = buf.iova
                assert not buf.lost and buf.id > 0 and iova > 0
        try:
            client.allocate(0)
        except physpool.InvalidArgument as e:
            code: str = e.code
            message: str = e.message
            assert code == "INVALID_ARGUMENT" and message
    print(f"typed example: ok ({tenant}, {ids[0]}, {physpool.__version__})")


if __name__ == "__main__":
    try:
        main()
    except physpool.Error as e:
        sys.exit(f"typed_example.py: {e}")
