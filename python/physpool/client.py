# SPDX-License-Identifier: Apache-2.0
"""connect() and Client: a connection to physpoold (physpool_client;
physpool::Client in C++)."""

import atexit
import ctypes
import threading
import weakref
from typing import Optional

from . import _args, _callbacks, _lib
from ._lib import AllocOptions, ArenaOptions, ConnectOptions, last_error
from ._scoped import Scoped
from .arena import Arena, LossBox, LostCallback
from .errors import FailedPrecondition, InvalidArgument, from_code
from .region import Region, RevocationBox, RevokedCallback

_open_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # The library's event thread must not call into Python while the
    # interpreter shuts down: stop every client's threads first.
    for client in list(_open_clients):
        client.close()


def _alloc_options(bytes: int, alignment: int, max_segments: int, numa_node: Optional[int],
                   ttl: Optional[float], label: str, boundary: int, preemptible: bool,
                   wait_timeout: Optional[float], low: int, high: int, numa_strict: bool,
                   may_reclaim: bool) -> AllocOptions:
    o = AllocOptions()
    o.bytes = _args.u64("bytes", bytes)
    o.alignment = _args.u64("alignment", alignment)
    o.boundary = _args.u64("boundary", boundary)
    o.max_segments = _args.u32("max_segments", max_segments)
    o.low = _args.u64("low", low)
    o.high = _args.u64("high", high)
    if numa_node is not None:
        o.use_numa_node = 1
        o.numa_node = _args.i32("numa_node", numa_node)
    o.numa_strict = int(bool(numa_strict))
    o.preemptible = int(bool(preemptible))
    o.may_reclaim = int(bool(may_reclaim))
    o.wait_timeout_ms = _args.millis("wait_timeout", wait_timeout)
    o.ttl_seconds = _args.whole_seconds("ttl", ttl)
    o.label = _args.text("label", label)
    return o


class Client(Scoped):
    """A connection to physpoold, from :func:`connect`. Thread-safe.

    Regions and arenas keep their client alive; :meth:`close` (or leaving
    ``with connect() as client:``) stops the background renewal and the
    Watch stream of every region and arena made with it (their leases then
    expire), as destroying a C++ ``physpool::Client`` does: release them
    first."""

    def __init__(self, lib: ctypes.CDLL, handle: ctypes.c_void_p) -> None:
        """Internal: clients come from :func:`connect`."""
        self._lib = lib
        self._handle: Optional[ctypes.c_void_p] = handle
        self._lock = threading.Lock()
        self._tenant = _lib.text(lib.physpool_client_tenant(handle))
        self._page_size = int(lib.physpool_client_page_size(handle))
        _open_clients.add(self)

    @property
    def tenant(self) -> str:
        """The tenant the daemon took the credentials for."""
        return self._tenant

    @property
    def page_size(self) -> int:
        """The daemon's page size in bytes."""
        return self._page_size

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._handle is None

    def _live(self) -> ctypes.c_void_p:
        handle = self._handle
        if handle is None:
            raise FailedPrecondition("the client is closed")
        return handle

    def allocate(self, bytes: int, alignment: int = 0, max_segments: int = 0,
                 numa_node: Optional[int] = None, ttl: Optional[float] = None,
                 label: str = "", boundary: int = 0, preemptible: bool = False,
                 wait_timeout: Optional[float] = None,
                 on_revoked: Optional[RevokedCallback] = None, *, low: int = 0,
                 high: int = 0, numa_strict: bool = False,
                 may_reclaim: bool = False) -> Region:
        """Leases and maps `bytes` of DMA memory (rounded up to pages).

        `alignment` (a power of two; 0: a page) and `boundary` (0: none)
        hold for each run's IOVA; at most `max_segments` runs (0: any
        number); `numa_node` prefers a node (`numa_strict`: only it; None:
        any); `ttl` in seconds (None: the daemon's default; rounded up);
        `label` for the operator; `preemptible` lets a reclaim take it back;
        `wait_timeout` in seconds waits that long for memory (None: no
        wait); `low`/`high` bound the IOVAs (`high` 0: unbounded);
        `may_reclaim` lets it preempt preemptible leases.

        The lease is renewed in the background. `on_revoked` is called once,
        on the library's event thread, with a :class:`Revocation` if the
        daemon takes the region back (``kind`` ``"revoked"``,
        ``"preempted"``, ``"expired"`` or ``"lost"``); exceptions it raises
        are logged on the ``physpool`` logger. The call carries a request id
        and is retried on UNAVAILABLE and DEADLINE_EXCEEDED as the C++
        client's (docs/client.md, "Retries and request ids").

        Raises the daemon's errors: InvalidArgument, ResourceExhausted,
        Unauthenticated, PermissionDenied, Unavailable, ..."""
        o = _alloc_options(bytes, alignment, max_segments, numa_node, ttl, label, boundary,
                           preemptible, wait_timeout, low, high, numa_strict, may_reclaim)
        box = RevocationBox(on_revoked)
        key = _callbacks.register(box)
        out = ctypes.c_void_p()
        try:
            rc = self._lib.physpool_alloc(self._live(), ctypes.byref(o),
                                          _callbacks.REVOKED_THUNK,
                                          _callbacks.user_pointer(key), ctypes.byref(out))
            if rc != 0:
                raise from_code(rc, last_error(self._lib))
        except BaseException:
            _callbacks.unregister(key)
            raise
        return Region(self, out, key, box, attached=False)

    def attach(self, lease_id: Optional[str] = None) -> Region:
        """Maps a lease that exists already (e.g. the one the DRA driver
        allocated for this pod's claim): `lease_id`, or ``$PHYSPOOL_LEASE``
        if None or "". The region neither renews nor releases the lease:
        :meth:`Region.release` only unmaps, and its revocation is not
        reported (the owner is told). Raises NotFound (ended),
        PermissionDenied (another tenant's), InvalidArgument (no id)."""
        out = ctypes.c_void_p()
        rc = self._lib.physpool_attach(self._live(), _args.text("lease_id", lease_id),
                                       ctypes.byref(out))
        if rc != 0:
            raise from_code(rc, last_error(self._lib))
        return Region(self, out, None, None, attached=True)

    def arena(self, bytes: int, max_bytes: int = 0, idle_release: Optional[float] = None,
              on_lost: Optional[LostCallback] = None, alignment: int = 0,
              numa_node: Optional[int] = None, *, max_segments: int = 0,
              boundary: int = 0, ttl: Optional[float] = None, label: str = "",
              preemptible: bool = False, wait_timeout: Optional[float] = None,
              low: int = 0, high: int = 0, numa_strict: bool = False,
              may_reclaim: bool = False, next_fit: bool = False) -> Arena:
        """An arena over a lease of `bytes` (the other lease arguments as in
        :meth:`allocate`, for each lease it takes). With `max_bytes` above
        `bytes` it grows, by more leases, up to `max_bytes` leased bytes; a
        growth lease that held no buffer for `idle_release` seconds (None:
        5) is released. `next_fit` chooses next fit over best fit.

        `on_lost` is called on the library's event thread with an
        :class:`ArenaLoss` when one of its leases is taken back; the memory
        of the buffers it names is unmapped as soon as it returns (their
        memoryviews are released then). Raises InvalidArgument (`bytes` 0,
        `max_bytes` below it) and the lease's errors."""
        o = ArenaOptions()
        o.region = _alloc_options(bytes, alignment, max_segments, numa_node, ttl, label,
                                  boundary, preemptible, wait_timeout, low, high,
                                  numa_strict, may_reclaim)
        o.max_bytes = _args.u64("max_bytes", max_bytes)
        o.idle_release_ms = _args.millis("idle_release", idle_release, minimum=1)
        o.next_fit = int(bool(next_fit))
        box = LossBox(on_lost)
        key = _callbacks.register(box)
        out = ctypes.c_void_p()
        try:
            rc = self._lib.physpool_arena_create(self._live(), ctypes.byref(o),
                                                 _callbacks.ARENA_LOST_THUNK,
                                                 _callbacks.user_pointer(key),
                                                 ctypes.byref(out))
            if rc != 0:
                raise from_code(rc, last_error(self._lib))
        except BaseException:
            _callbacks.unregister(key)
            raise
        return Arena(self, out, key, box)

    def close(self) -> None:
        """Disconnects (idempotent): stops renewing and watching this
        client's regions and arenas (their leases then expire unless
        released). Regions stay mapped until released."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is None:
            return
        _open_clients.discard(self)
        lib = self._lib

        def disconnect() -> None:
            lib.physpool_disconnect(handle)

        if not _callbacks.defer_in_callback(disconnect):
            disconnect()

    def _end(self) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<physpool.Client tenant={self._tenant!r} {state}>"


def connect(endpoint: Optional[str] = None, token: Optional[str] = None,
            token_file: Optional[str] = None, tls_ca: Optional[str] = None,
            tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
            timeout: Optional[float] = None, *, fd_socket: Optional[str] = None,
            allocate_attempts: Optional[int] = None) -> Client:
    """Connects to physpoold and checks it answers, as the C++
    ``Client::Connect``: each argument, else its ``PHYSPOOL_*`` variable,
    else the default.

    `endpoint`: ``"unix:/path"`` or ``"host:port"`` (else
    ``$PHYSPOOL_ENDPOINT``, else the daemon's default socket); `token` or
    `token_file` (else ``$PHYSPOOL_TOKEN``, ``$PHYSPOOL_TOKEN_FILE``);
    `tls_ca` (+ `tls_cert`, `tls_key` for mTLS) for TCP with TLS;
    `timeout`: seconds per call (None: 10); `fd_socket`: the daemon's fd
    socket (None: as the daemon says); `allocate_attempts`: attempts of one
    allocate (None: 5).

    Raises Unavailable (no daemon), Unauthenticated (bad credentials),
    LibraryNotFound (no libphyspool-client), ..."""
    o = ConnectOptions()
    o.endpoint = _args.text("endpoint", endpoint)
    o.token = _args.text("token", token)
    o.token_file = _args.text("token_file", token_file)
    o.tls_ca = _args.text("tls_ca", tls_ca)
    o.tls_cert = _args.text("tls_cert", tls_cert)
    o.tls_key = _args.text("tls_key", tls_key)
    o.fd_socket = _args.text("fd_socket", fd_socket)
    o.timeout_ms = _args.millis("timeout", timeout, minimum=1)
    if timeout == 0:
        raise InvalidArgument("timeout must be positive, got 0")
    if allocate_attempts is not None:
        o.allocate_attempts = _args.integer("allocate_attempts", allocate_attempts, 1, 100)
    lib = _lib.load()
    out = ctypes.c_void_p()
    rc = lib.physpool_connect_with(ctypes.byref(o), ctypes.byref(out))
    if rc != 0:
        raise from_code(rc, last_error(lib))
    return Client(lib, out)
