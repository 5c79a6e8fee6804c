# SPDX-License-Identifier: Apache-2.0
"""Finding and loading libphyspool-client, and its C API (physpool.h) in ctypes.

The structures and prototypes below mirror ``client/include/physpool/
physpool.h`` one for one; ``tests/python`` compares their sizes and field
offsets with the C compiler's (``abi_probe``), so a change of the header that
is not made here fails ``make check``.

Where the library comes from, first found wins:

1. ``$PHYSPOOL_CLIENT_LIBRARY``: a path to the shared library (if set, it
   must load; nothing else is tried);
2. the copy bundled inside the installed package (``physpool/_native/``,
   made by ``pip install ./python`` from ``build/client``);
3. the system loader: ``libphyspool-client.so.0`` (``LD_LIBRARY_PATH``, or
   after ``cmake --install``).
"""

import ctypes
import os
import threading
from typing import Any, List, Optional

from .errors import LibraryNotFound

#: The library's soname, what the system loader is asked for.
SONAME = "libphyspool-client.so.0"
#: The environment variable naming the library to load.
ENV_LIBRARY = "PHYSPOOL_CLIENT_LIBRARY"
#: Where an install bundles the library (inside the package).
BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_native", SONAME)


class AllocOptions(ctypes.Structure):
    """physpool_alloc_options."""

    _fields_ = [
        ("bytes", ctypes.c_uint64),
        ("alignment", ctypes.c_uint64),
        ("boundary", ctypes.c_uint64),
        ("max_segments", ctypes.c_uint32),
        ("low", ctypes.c_uint64),
        ("high", ctypes.c_uint64),
        ("use_numa_node", ctypes.c_int),
        ("numa_node", ctypes.c_int32),
        ("numa_strict", ctypes.c_int),
        ("preemptible", ctypes.c_int),
        ("may_reclaim", ctypes.c_int),
        ("wait_timeout_ms", ctypes.c_uint32),
        ("ttl_seconds", ctypes.c_uint32),
        ("label", ctypes.c_char_p),
    ]


class ConnectOptions(ctypes.Structure):
    """physpool_connect_options."""

    _fields_ = [
        ("endpoint", ctypes.c_char_p),
        ("token", ctypes.c_char_p),
        ("token_file", ctypes.c_char_p),
        ("tls_ca", ctypes.c_char_p),
        ("tls_cert", ctypes.c_char_p),
        ("tls_key", ctypes.c_char_p),
        ("fd_socket", ctypes.c_char_p),
        ("timeout_ms", ctypes.c_uint32),
        ("allocate_attempts", ctypes.c_uint32),
    ]


class CRun(ctypes.Structure):
    """physpool_run."""

    _fields_ = [
        ("iova", ctypes.c_uint64),
        ("bytes", ctypes.c_uint64),
        ("cpu", ctypes.c_void_p),
    ]


class ArenaOptions(ctypes.Structure):
    """physpool_arena_options."""

    _fields_ = [
        ("region", AllocOptions),
        ("max_bytes", ctypes.c_uint64),
        ("idle_release_ms", ctypes.c_uint32),
        ("next_fit", ctypes.c_int),
    ]


class BufferOptions(ctypes.Structure):
    """physpool_buffer_options."""

    _fields_ = [
        ("bytes", ctypes.c_uint64),
        ("alignment", ctypes.c_uint64),
        ("boundary", ctypes.c_uint64),
        ("max_segments", ctypes.c_uint32),
    ]


#: The C structures by their C names (the ABI check walks these).
STRUCTS = {
    "physpool_alloc_options": AllocOptions,
    "physpool_connect_options": ConnectOptions,
    "physpool_run": CRun,
    "physpool_arena_options": ArenaOptions,
    "physpool_buffer_options": BufferOptions,
}

#: physpool_revoked_fn
REVOKED_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                              ctypes.c_int64, ctypes.c_void_p)
#: physpool_arena_lost_fn
ARENA_LOST_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                 ctypes.c_int64, ctypes.POINTER(ctypes.c_uint64),
                                 ctypes.c_size_t, ctypes.c_void_p)

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_S = ctypes.c_char_p
_PROTOTYPES: List[Any] = [
    ("physpool_connect_with", ctypes.c_int, [ctypes.POINTER(ConnectOptions), _PP]),
    ("physpool_disconnect", None, [_P]),
    ("physpool_client_tenant", _S, [_P]),
    ("physpool_client_page_size", ctypes.c_uint64, [_P]),
    ("physpool_alloc", ctypes.c_int, [_P, ctypes.POINTER(AllocOptions), REVOKED_FN, _P, _PP]),
    ("physpool_attach", ctypes.c_int, [_P, _S, _PP]),
    ("physpool_region_run_count", ctypes.c_size_t, [_P]),
    ("physpool_region_run", CRun, [_P, ctypes.c_size_t]),
    ("physpool_region_lease_id", _S, [_P]),
    ("physpool_region_bytes", ctypes.c_uint64, [_P]),
    ("physpool_region_request_id", _S, [_P]),
    ("physpool_region_revoked", ctypes.c_int, [_P]),
    ("physpool_region_free", None, [_P]),
    ("physpool_arena_create", ctypes.c_int,
     [_P, ctypes.POINTER(ArenaOptions), ARENA_LOST_FN, _P, _PP]),
    ("physpool_arena_destroy", None, [_P]),
    ("physpool_buffer_alloc", ctypes.c_int, [_P, ctypes.POINTER(BufferOptions), _PP]),
    ("physpool_buffer_run_count", ctypes.c_size_t, [_P]),
    ("physpool_buffer_run", CRun, [_P, ctypes.c_size_t]),
    ("physpool_buffer_id", ctypes.c_uint64, [_P]),
    ("physpool_buffer_lost", ctypes.c_int, [_P]),
    ("physpool_buffer_free", None, [_P]),
    ("physpool_last_error", _S, []),
]

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    for name, restype, argtypes in _PROTOTYPES:
        fn = getattr(lib, name)  # AttributeError: an older library
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def _candidates() -> List[str]:
    env = os.environ.get(ENV_LIBRARY)
    if env:
        return [env]
    found = [BUNDLED] if os.path.exists(BUNDLED) else []
    return found + [SONAME]


def load() -> ctypes.CDLL:
    """The loaded library (loaded on first use; see the module's docstring
    for where it is looked for). Raises LibraryNotFound naming each place
    tried and why it failed."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for path in _candidates():
            try:
                _lib = _declare(ctypes.CDLL(path))
                return _lib
            except (OSError, AttributeError) as e:
                tried.append(f"{path}: {e}")
        env = os.environ.get(ENV_LIBRARY)
        if not env and not os.path.exists(BUNDLED):
            tried.insert(0, f"{BUNDLED}: not bundled (the package was installed "
                            "without a built build/client)")
        raise LibraryNotFound(
            "libphyspool-client not found; tried " + "; ".join(tried) +
            f" (set ${ENV_LIBRARY} to the library, or reinstall the package "
            "after `make build`: `make python`)")


def text(value: Optional[bytes]) -> str:
    """A C string the library returned, as str ("" for NULL)."""
    return value.decode("utf-8", "replace") if value else ""


def last_error(lib: ctypes.CDLL) -> str:
    """physpool_last_error() of this thread."""
    return text(lib.physpool_last_error())
