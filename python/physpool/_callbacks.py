# SPDX-License-Identifier: Apache-2.0
"""The library's callbacks into Python, from its own event thread.

The C library calls ``physpool_revoked_fn`` and ``physpool_arena_lost_fn``
on the client's event thread (a C++ thread). One ctypes thunk of each kind
lives for the whole process (so a call in flight can never run into a freed
thunk); the ``user`` pointer is a key into a table of Python handlers,
removed once the region or arena is gone. A handler's exception never
reaches C: it is logged on the ``physpool`` logger.

Freeing a region or destroying an arena from inside a callback is not
allowed by the C library; :func:`defer_in_callback` moves such a call to a
short-lived thread of its own instead.
"""

import ctypes
import logging
import threading
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

from ._lib import ARENA_LOST_FN, REVOKED_FN, text

log = logging.getLogger("physpool")


class Revocation(NamedTuple):
    """What ``on_revoked`` is told when the daemon takes a region back.

    ``kind`` is ``"revoked"`` (by an admin), ``"preempted"`` (by a reclaim:
    stop DMA by ``deadline_unix_ms``), ``"expired"`` or ``"lost"`` (a
    renewal, or the lease list after a daemon restart, found it gone; the
    reason says which). ``deadline_unix_ms`` is 0 except for preemption."""

    lease_id: str
    kind: str
    reason: str
    deadline_unix_ms: int


class ArenaLoss(NamedTuple):
    """What an arena's ``on_lost`` is told when one of its leases is taken
    back: the lease, ``kind``, ``reason`` and ``deadline_unix_ms`` as
    :class:`Revocation`, and ``buffers``, the ids (``Buffer.id``) of the
    live buffers that had memory in it. That memory is unmapped as soon as
    ``on_lost`` returns."""

    lease_id: str
    kind: str
    reason: str
    deadline_unix_ms: int
    buffers: Tuple[int, ...]


_lock = threading.Lock()
_handlers: Dict[int, Callable[[Any], None]] = {}
_next_key = 1
_local = threading.local()


def register(handler: Callable[[Any], None]) -> int:
    """A key (the C ``user`` pointer) for `handler`."""
    global _next_key
    with _lock:
        key = _next_key
        _next_key += 1
        _handlers[key] = handler
        return key


def unregister(key: int) -> None:
    """Forgets a handler (its region or arena is gone)."""
    with _lock:
        _handlers.pop(key, None)


def in_callback() -> bool:
    """True on a thread that is running one of the library's callbacks."""
    return bool(getattr(_local, "depth", 0))


def defer_in_callback(action: Callable[[], None]) -> bool:
    """Inside a callback: runs `action` on a new thread and returns True.
    Elsewhere: returns False (the caller runs it)."""
    if not in_callback():
        return False
    threading.Thread(target=action, name="physpool-deferred-free", daemon=True).start()
    return True


def _dispatch(key: Optional[int], event: Any) -> None:
    with _lock:
        handler = _handlers.get(key or 0)
    if handler is None:
        return
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        handler(event)
    except BaseException:  # never into C: the C++ thread would not survive it
        log.exception("physpool: exception in a callback for lease %s", event.lease_id)
    finally:
        _local.depth -= 1


def _on_revoked(lease_id: Optional[bytes], kind: Optional[bytes], reason: Optional[bytes],
                deadline: int, user: Optional[int]) -> None:
    try:
        _dispatch(user, Revocation(text(lease_id), text(kind), text(reason), int(deadline)))
    except BaseException:
        log.exception("physpool: revocation callback failed")


def _on_lost(lease_id: Optional[bytes], kind: Optional[bytes], reason: Optional[bytes],
             deadline: int, buffers: Any, count: int, user: Optional[int]) -> None:
    try:
        ids = tuple(int(buffers[i]) for i in range(count)) if count else ()
        _dispatch(user, ArenaLoss(text(lease_id), text(kind), text(reason), int(deadline), ids))
    except BaseException:
        log.exception("physpool: arena loss callback failed")


#: The one physpool_revoked_fn thunk (never freed).
REVOKED_THUNK = REVOKED_FN(_on_revoked)
#: The one physpool_arena_lost_fn thunk (never freed).
ARENA_LOST_THUNK = ARENA_LOST_FN(_on_lost)


def user_pointer(key: int) -> ctypes.c_void_p:
    """The C ``user`` argument for a registered key."""
    return ctypes.c_void_p(key)
