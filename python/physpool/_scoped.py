# SPDX-License-Identifier: Apache-2.0
"""Scoped: the context manager and finalizer shared by Client, Region,
Arena and Buffer, over each one's idempotent ending (close, release,
free)."""

from types import TracebackType
from typing import Optional, Type, TypeVar

_T = TypeVar("_T", bound="Scoped")


class Scoped:
    """``with obj:`` ends `obj` on leaving the block; so does garbage
    collection. Subclasses implement :meth:`_end` (idempotent)."""

    def _end(self) -> None:
        raise NotImplementedError

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self._end()

    def __del__(self) -> None:
        try:
            self._end()
        except Exception:  # interpreter shutdown: the library may be gone
            pass
