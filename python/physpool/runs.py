# SPDX-License-Identifier: Apache-2.0
"""Run: one IOVA-contiguous piece of a region or buffer, and its memory.

``Run.memory`` is a writable ``memoryview`` (format ``"B"``) over the
library's own mapping of the run (the lease's view, ``MAP_SHARED``), made
without a copy from the run's CPU address. It is valid only while its
region or buffer is: ``Region.release()``, ``Buffer.free()``, an arena's
loss of the lease, and closing the arena or dropping the last reference
unmap the memory. The package then releases the memoryviews it handed out
(using one afterwards raises ``ValueError``), but it cannot reach objects
made from them (slices, ``numpy.frombuffer`` arrays, ``ctypes`` pointers):
touching those after the memory is unmapped is a use after free (typically
``SIGSEGV``). Drop them first.
"""

import ctypes
from typing import Callable, Iterable, NamedTuple, Tuple

from ._lib import CRun
from .errors import Internal


class Run(NamedTuple):
    """One run: ``iova`` (what the device uses), ``bytes`` (its length) and
    ``memory`` (the same memory in this process, a writable memoryview of
    ``bytes`` bytes; see the module docstring for how long it is valid)."""

    iova: int
    bytes: int
    memory: memoryview


def view(address: int, length: int) -> memoryview:
    """A writable byte memoryview over `length` bytes at `address` (no copy)."""
    if length == 0:
        return memoryview(bytearray()).cast("B")
    array = (ctypes.c_char * length).from_address(address)
    return memoryview(array).cast("B")


def collect(count: int, run_at: Callable[[int], CRun]) -> Tuple[Run, ...]:
    """The runs of a C region or buffer: run_at(i) for i < count."""
    runs = []
    for i in range(count):
        c = run_at(i)
        if not c.cpu and c.bytes:
            raise Internal(f"run {i} of {count} has no CPU address")
        runs.append(Run(int(c.iova), int(c.bytes), view(c.cpu or 0, int(c.bytes))))
    return tuple(runs)


def invalidate(runs: Iterable[Run]) -> None:
    """Releases the memoryviews of `runs` before their memory is unmapped.
    A view that still has exports (e.g. a numpy array over it) cannot be
    released: those stay, dangling, as the module docstring says."""
    for run in runs:
        try:
            run.memory.release()
        except BufferError:
            pass
