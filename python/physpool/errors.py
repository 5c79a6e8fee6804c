# SPDX-License-Identifier: Apache-2.0
"""physpool.Error and its subclasses, one per gRPC status code.

Every failure of the library raises a subclass of :class:`Error`, whose
``code`` is the gRPC status code's name (``"RESOURCE_EXHAUSTED"``) and
whose ``message`` is the daemon's (or the library's) message, exactly as
the C++ client's ``absl::Status`` carries them.
"""

from typing import Dict, Type


class Error(Exception):
    """A physpool failure: ``code`` (the gRPC status code name, e.g.
    ``"RESOURCE_EXHAUSTED"``) and ``message`` (the daemon's message)."""

    #: The gRPC status code name of this class.
    code: str = "UNKNOWN"

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        #: The daemon's (or the library's) message.
        self.message = message
        if code:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Cancelled(Error):
    """CANCELLED (1)."""

    code = "CANCELLED"


class Unknown(Error):
    """UNKNOWN (2)."""

    code = "UNKNOWN"


class InvalidArgument(Error):
    """INVALID_ARGUMENT (3): a malformed request (bytes 0, an alignment that
    is not a power of two, ...)."""

    code = "INVALID_ARGUMENT"


class DeadlineExceeded(Error):
    """DEADLINE_EXCEEDED (4): no answer in time, or a wait ran out."""

    code = "DEADLINE_EXCEEDED"


class NotFound(Error):
    """NOT_FOUND (5): e.g. a lease that ended."""

    code = "NOT_FOUND"


class AlreadyExists(Error):
    """ALREADY_EXISTS (6)."""

    code = "ALREADY_EXISTS"


class PermissionDenied(Error):
    """PERMISSION_DENIED (7): e.g. another tenant's lease."""

    code = "PERMISSION_DENIED"


class ResourceExhausted(Error):
    """RESOURCE_EXHAUSTED (8): no memory that fits, or over the quota."""

    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(Error):
    """FAILED_PRECONDITION (9): e.g. an object already closed."""

    code = "FAILED_PRECONDITION"


class Aborted(Error):
    """ABORTED (10)."""

    code = "ABORTED"


class OutOfRange(Error):
    """OUT_OF_RANGE (11)."""

    code = "OUT_OF_RANGE"


class Unimplemented(Error):
    """UNIMPLEMENTED (12)."""

    code = "UNIMPLEMENTED"


class Internal(Error):
    """INTERNAL (13)."""

    code = "INTERNAL"


class Unavailable(Error):
    """UNAVAILABLE (14): the daemon is unreachable (after the retries)."""

    code = "UNAVAILABLE"


class DataLoss(Error):
    """DATA_LOSS (15)."""

    code = "DATA_LOSS"


class Unauthenticated(Error):
    """UNAUTHENTICATED (16): no token, or a token the daemon does not know."""

    code = "UNAUTHENTICATED"


class LibraryNotFound(Unavailable):
    """libphyspool-client could not be loaded (code ``UNAVAILABLE``); the
    message names every place tried and why it failed."""


#: The error class of each gRPC status code number.
BY_NUMBER: Dict[int, Type[Error]] = {
    1: Cancelled, 2: Unknown, 3: InvalidArgument, 4: DeadlineExceeded,
    5: NotFound, 6: AlreadyExists, 7: PermissionDenied, 8: ResourceExhausted,
    9: FailedPrecondition, 10: Aborted, 11: OutOfRange, 12: Unimplemented,
    13: Internal, 14: Unavailable, 15: DataLoss, 16: Unauthenticated,
}


def from_code(number: int, message: str) -> Error:
    """The Error for a C API return code (a gRPC status code number)."""
    cls = BY_NUMBER.get(number)
    if cls is None:
        return Unknown(f"{message} (status code {number})")
    return cls(message)
