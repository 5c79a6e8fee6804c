# SPDX-License-Identifier: Apache-2.0
"""physpool: lease DMA memory from physpoold, from Python.

A thin typed layer over the C library ``libphyspool-client`` (ctypes over
``physpool/physpool.h``): renewal, revocation over the Watch stream,
request-id retries, the fd socket, the mappings and the arena's placement
are the C++ client's own code. ::

    import physpool
    with physpool.connect() as client:
        with client.allocate(1 << 20, alignment=1 << 16, max_segments=1) as region:
            region.runs[0].memory[:4] = b"\\x01\\x02\\x03\\x04"
            print(region.lease_id, hex(region.runs[0].iova))

See docs/client.md, "Python".
"""

from ._callbacks import ArenaLoss, Revocation
from ._version import version as _version
from .arena import Arena, Buffer, LostCallback
from .client import Client, connect
from .errors import (Aborted, AlreadyExists, Cancelled, DataLoss, DeadlineExceeded, Error,
                     FailedPrecondition, Internal, InvalidArgument, LibraryNotFound, NotFound,
                     OutOfRange, PermissionDenied, ResourceExhausted, Unauthenticated,
                     Unavailable, Unimplemented, Unknown)
from .region import Region, RevokedCallback
from .runs import Run

#: The package's version, the project's (CMakeLists.txt).
__version__: str = _version()

__all__ = [
    "Aborted", "AlreadyExists", "Arena", "ArenaLoss", "Buffer", "Cancelled", "Client",
    "DataLoss", "DeadlineExceeded", "Error", "FailedPrecondition", "Internal",
    "InvalidArgument", "LibraryNotFound", "LostCallback", "NotFound", "OutOfRange",
    "PermissionDenied", "Region", "ResourceExhausted", "Revocation", "RevokedCallback",
    "Run", "Unauthenticated", "Unavailable", "Unimplemented", "Unknown", "__version__",
    "connect",
]
