# SPDX-License-Identifier: Apache-2.0
"""Arena and Buffer: buffers placed in this process in leased regions
(physpool_arena, physpool_buffer; physpool::Arena in C++)."""

import ctypes
import threading
import weakref
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple, cast

from . import _args, _callbacks
from ._callbacks import ArenaLoss
from ._lib import BufferOptions, CRun, last_error
from ._scoped import Scoped
from .errors import FailedPrecondition, from_code
from .runs import Run, collect, invalidate

if TYPE_CHECKING:
    from .client import Client

#: The signature of an arena's ``on_lost``.
LostCallback = Callable[[ArenaLoss], None]


class LossBox:
    """The arena's side of the event thread: runs the user's ``on_lost``,
    then marks the buffers it hit lost and releases their memoryviews
    (their memory is unmapped when the callback returns)."""

    def __init__(self, on_lost: Optional[LostCallback]) -> None:
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._buffers: Dict[int, "weakref.ReferenceType[Buffer]"] = {}
        self._closed_key = 0  # the arena closed: unregister once empty

    def add(self, buffer: "Buffer") -> None:
        """Tracks a live buffer."""
        with self._lock:
            self._buffers[buffer.id] = weakref.ref(buffer)

    def remove(self, buffer_id: int) -> None:
        """Forgets a freed buffer."""
        with self._lock:
            self._buffers.pop(buffer_id, None)
            done = self._closed_key if not self._buffers else 0
        if done:
            _callbacks.unregister(done)

    def close(self, key: int) -> None:
        """The arena was closed: its handler goes with its last buffer (the
        library keeps the leases, and may report their loss, till then)."""
        with self._lock:
            self._closed_key = key
            empty = not self._buffers
        if empty:
            _callbacks.unregister(key)

    def live(self) -> int:
        """The number of buffers not yet freed."""
        with self._lock:
            return len(self._buffers)

    def __call__(self, loss: ArenaLoss) -> None:
        """Handles a loss (on the event thread)."""
        try:
            if self._on_lost is not None:
                self._on_lost(loss)
        finally:
            with self._lock:
                hit = [self._buffers.get(i) for i in loss.buffers]
            for ref in hit:
                buffer = ref() if ref is not None else None
                if buffer is not None:
                    buffer._mark_lost()


class Buffer(Scoped):
    """Memory placed by an :class:`Arena` (no RPC). ``with arena.allocate(
    ...) as buf:`` frees it when the block ends; :meth:`free` does it early,
    and so does dropping the last reference."""

    def __init__(self, arena: "Arena", handle: ctypes.c_void_p) -> None:
        """Internal: buffers come from Arena.allocate."""
        lib: ctypes.CDLL = arena._lib
        self._arena: Optional[Arena] = arena
        self._lib = lib
        self._handle: Optional[ctypes.c_void_p] = handle
        self._lock = threading.Lock()
        self._lost = False
        self._runs: Tuple[Run, ...] = ()
        self._id = int(lib.physpool_buffer_id(handle))
        self._runs = collect(int(lib.physpool_buffer_run_count(handle)),
                             lambda i: cast(CRun, lib.physpool_buffer_run(handle, i)))
        self._first = self._runs[0]
        self._bytes = sum(r.bytes for r in self._runs)

    @property
    def id(self) -> int:
        """Unique within its arena; :class:`ArenaLoss` names buffers by it."""
        return self._id

    @property
    def runs(self) -> Tuple[Run, ...]:
        """The runs, ascending IOVAs (one unless ``max_segments`` allowed
        more). Empty once freed or lost."""
        return self._runs

    @property
    def iova(self) -> int:
        """The first run's IOVA (what the device uses)."""
        return self._first.iova

    @property
    def memory(self) -> memoryview:
        """The first run's memory, a writable memoryview (released, so any
        use raises ValueError, once the buffer is freed or lost)."""
        return self._first.memory

    @property
    def bytes(self) -> int:
        """The buffer's size (whole pages of the daemon's page size)."""
        return self._bytes

    @property
    def lost(self) -> bool:
        """True once the lease under it was taken back (``on_lost`` ran for
        it): its memory is gone. Free it; that only forgets it."""
        if self._lost:
            return True
        handle = self._handle
        return handle is not None and bool(self._lib.physpool_buffer_lost(handle) == 1)

    @property
    def freed(self) -> bool:
        """True once :meth:`free` ran."""
        return self._handle is None

    def _mark_lost(self) -> None:
        self._lost = True
        with self._lock:
            runs, self._runs = self._runs, ()
        invalidate(runs)

    def free(self) -> None:
        """Returns the memory to its arena (idempotent). Its memoryviews are
        released; anything made from them must not be touched after."""
        with self._lock:
            handle, self._handle = self._handle, None
            runs, self._runs = self._runs, ()
        if handle is None:
            return
        invalidate(runs)
        self._lib.physpool_buffer_free(handle)
        arena, self._arena = self._arena, None
        if arena is not None:
            arena._box.remove(self._id)

    def _end(self) -> None:
        self.free()

    def __repr__(self) -> str:
        state = "freed" if self.freed else ("lost" if self.lost else "live")
        return f"<physpool.Buffer {self._id} iova=0x{self.iova:x} {self._bytes} bytes {state}>"


class Arena(Scoped):
    """Buffers placed in this process in regions the arena leased (the
    daemon's allocator core, pglist, over the lease's runs: alignment and
    boundary hold in IOVA space). From :meth:`Client.arena`. Thread-safe.

    Free every buffer before :meth:`close`: closing with live buffers is an
    error the library reports on stderr, and it then keeps the leases until
    the last buffer is freed."""

    def __init__(self, client: "Client", handle: ctypes.c_void_p, key: int,
                 box: LossBox) -> None:
        """Internal: arenas come from Client.arena."""
        self._client: Optional["Client"] = client
        self._lib: ctypes.CDLL = client._lib
        self._handle: Optional[ctypes.c_void_p] = handle
        self._key = key
        self._box: LossBox = box
        self._lock = threading.Lock()

    def allocate(self, bytes: int, alignment: int = 0, boundary: int = 0,
                 max_segments: int = 1) -> Buffer:
        """Places a buffer of `bytes` (rounded up to whole pages): each
        run's IOVA a multiple of `alignment` (a power of two; 0: a page), no
        run crossing a multiple of `boundary` (0: none; else a power of two
        at least the rounded size), at most `max_segments` runs (0: any
        number). No RPC, unless the arena grows.

        Raises InvalidArgument (a malformed request), ResourceExhausted (it
        does not fit and the arena may not grow), Unavailable (a lease was
        taken back and the arena may not grow), or a growth lease's error;
        FailedPrecondition once closed."""
        o = BufferOptions()
        o.bytes = _args.u64("bytes", bytes)
        o.alignment = _args.u64("alignment", alignment)
        o.boundary = _args.u64("boundary", boundary)
        segments = _args.u32("max_segments", max_segments)
        o.max_segments = _args.U32_MAX if segments == 0 else segments
        handle = self._handle
        if handle is None:
            raise FailedPrecondition("the arena is closed")
        out = ctypes.c_void_p()
        rc = self._lib.physpool_buffer_alloc(handle, ctypes.byref(o), ctypes.byref(out))
        if rc != 0:
            raise from_code(rc, last_error(self._lib))
        buffer = Buffer(self, out)
        self._box.add(buffer)
        return buffer

    @property
    def live_buffers(self) -> int:
        """The buffers allocated here and not yet freed."""
        return self._box.live()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._handle is None

    def close(self) -> None:
        """Releases the arena's leases and unmaps them (idempotent). With
        live buffers, the library reports an error on stderr and keeps the
        leases until the last of them is freed."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is None:
            return
        lib, key, box = self._lib, self._key, self._box

        def destroy() -> None:
            lib.physpool_arena_destroy(handle)
            box.close(key)

        if not _callbacks.defer_in_callback(destroy):
            destroy()
        self._client = None

    def _end(self) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<physpool.Arena {state}, {self.live_buffers} live buffers>"
