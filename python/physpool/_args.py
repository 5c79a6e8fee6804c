# SPDX-License-Identifier: Apache-2.0
"""Checking Python arguments before they become C integers.

ctypes would silently wrap a negative or too large int; these raise
InvalidArgument instead, naming the argument. Values the C types can hold
go to the library unchanged, so the daemon judges them as it judges the C++
client's (an alignment of 3 is the daemon's INVALID_ARGUMENT).
"""

import math
from typing import Optional

from .errors import InvalidArgument

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1


def integer(name: str, value: int, low: int, high: int) -> int:
    """value as an int in [low, high]; TypeError for a non-integer."""
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidArgument(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def u64(name: str, value: int) -> int:
    """An unsigned 64-bit argument."""
    return integer(name, value, 0, U64_MAX)


def u32(name: str, value: int) -> int:
    """An unsigned 32-bit argument."""
    return integer(name, value, 0, U32_MAX)


def i32(name: str, value: int) -> int:
    """A signed 32-bit argument."""
    return integer(name, value, -(1 << 31), (1 << 31) - 1)


def _number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise InvalidArgument(f"{name} must be a non-negative number of seconds, got {value}")
    return float(value)


def millis(name: str, seconds: Optional[float], minimum: int = 0) -> int:
    """Seconds as whole milliseconds for a uint32 field, rounded up and at
    least `minimum`; None is 0 (the C API's "default" or "none")."""
    if seconds is None:
        return 0
    ms = max(minimum, math.ceil(_number(name, seconds) * 1000))
    if ms > U32_MAX:
        raise InvalidArgument(f"{name} must be at most {U32_MAX / 1000} s, got {seconds}")
    return ms


def whole_seconds(name: str, seconds: Optional[float]) -> int:
    """Seconds (None: 0, the daemon's default) rounded up, for a uint32."""
    if seconds is None:
        return 0
    s = math.ceil(_number(name, seconds))
    if s > U32_MAX:
        raise InvalidArgument(f"{name} must be at most {U32_MAX} s, got {seconds}")
    return s


def text(name: str, value: Optional[str]) -> Optional[bytes]:
    """A str argument as a C string (None stays NULL)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise InvalidArgument(f"{name} must not contain NUL characters")
    return value.encode("utf-8")
