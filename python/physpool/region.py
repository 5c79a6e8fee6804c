# SPDX-License-Identifier: Apache-2.0
"""Region: a leased, mapped region (physpool_region; physpool::Region)."""

import ctypes
import threading
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple, cast

from . import _callbacks
from ._callbacks import Revocation
from ._lib import CRun, text
from ._scoped import Scoped
from .runs import Run, collect, invalidate

if TYPE_CHECKING:
    from .client import Client

#: The signature of ``on_revoked``.
RevokedCallback = Callable[[Revocation], None]


class RevocationBox:
    """Where a region's revocation is recorded by the event thread (made
    before the C call, which may already report one)."""

    def __init__(self, on_revoked: Optional[RevokedCallback]) -> None:
        self.revocation: Optional[Revocation] = None
        self._on_revoked = on_revoked

    def __call__(self, event: Revocation) -> None:
        """Records `event`, then runs the user's callback (if any)."""
        self.revocation = event
        if self._on_revoked is not None:
            self._on_revoked(event)


class Region(Scoped):
    """A leased, mapped region, from :meth:`Client.allocate` or
    :meth:`Client.attach`.

    The lease is renewed in the background by the library until the region
    is released or taken back. ``with client.allocate(...) as region:``
    releases it when the block ends; :meth:`release` does it early, and so
    does dropping the last reference (later, when Python collects it).
    A region from :meth:`Client.attach` is only unmapped: its owner renews
    and releases the lease.
    """

    def __init__(self, client: "Client", handle: ctypes.c_void_p, key: Optional[int],
                 box: Optional[RevocationBox], attached: bool) -> None:
        """Internal: regions come from Client.allocate and Client.attach."""
        lib: ctypes.CDLL = client._lib
        self._client: Optional["Client"] = client
        self._lib = lib
        self._handle: Optional[ctypes.c_void_p] = handle
        self._key = key
        self._box = box
        self._attached = attached
        self._lock = threading.Lock()
        self._runs: Tuple[Run, ...] = ()
        self._lease_id = text(lib.physpool_region_lease_id(handle))
        self._bytes = int(lib.physpool_region_bytes(handle))
        self._request_id = text(lib.physpool_region_request_id(handle))
        self._runs = collect(
            int(lib.physpool_region_run_count(handle)),
            lambda i: cast(CRun, lib.physpool_region_run(handle, i)))

    @property
    def lease_id(self) -> str:
        """The lease's id (``l-`` and 16 hex digits)."""
        return self._lease_id

    @property
    def bytes(self) -> int:
        """The lease's size in bytes (whole pages: at least what was asked)."""
        return self._bytes

    @property
    def request_id(self) -> str:
        """The request id the lease was allocated with (32 hex digits); for
        an attached region, the one its owner used."""
        return self._request_id

    @property
    def runs(self) -> Tuple[Run, ...]:
        """The runs, ascending IOVAs: ``iova``, ``bytes`` and ``memory`` (a
        writable memoryview, valid until :meth:`release`). Empty once
        released."""
        return self._runs

    @property
    def attached(self) -> bool:
        """True for a region of :meth:`Client.attach` (only unmapped when
        released)."""
        return self._attached

    @property
    def released(self) -> bool:
        """True once :meth:`release` ran (the memory is unmapped)."""
        return self._handle is None

    @property
    def revoked(self) -> bool:
        """True once the daemon took the region back (``on_revoked`` ran).
        Its memory stays mapped until :meth:`release`, but it is no longer
        the lease's: stop the device and release it."""
        if self._box is not None and self._box.revocation is not None:
            return True
        handle = self._handle
        if handle is None:
            return False
        return bool(self._lib.physpool_region_revoked(handle) == 1)

    @property
    def revocation(self) -> Optional[Revocation]:
        """What ``on_revoked`` was told (kind, reason, ...), or None."""
        return None if self._box is None else self._box.revocation

    def release(self) -> None:
        """Unmaps the memory and releases the lease (an attached region:
        only unmaps). Idempotent. Stop the device's DMA first; the memory
        views of :attr:`runs` are released, and anything made from them
        must not be touched after this. Called from inside a callback, the
        work moves to a thread of its own (the library forbids it there)."""
        with self._lock:
            handle, self._handle = self._handle, None
            runs, self._runs = self._runs, ()
        if handle is None:
            return
        invalidate(runs)
        key, lib = self._key, self._lib

        def free() -> None:
            lib.physpool_region_free(handle)
            if key is not None:
                _callbacks.unregister(key)

        if not _callbacks.defer_in_callback(free):
            free()
        self._client = None

    def _end(self) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else ("revoked" if self.revoked else "live")
        runs: List[str] = [f"0x{r.iova:x}+{r.bytes}" for r in self._runs]
        return (f"<physpool.Region {self._lease_id} {self._bytes} bytes {state}"
                f" runs=[{', '.join(runs)}]>")
