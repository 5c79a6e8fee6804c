# SPDX-License-Identifier: Apache-2.0
"""The package's version: the project's (``project(physpool VERSION x.y.z)``
in the top-level CMakeLists.txt), recorded by the install; from a checkout
that was not installed, read from that file."""

import os
import re


def _from_checkout() -> str:
    cmake = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                         "CMakeLists.txt")
    try:
        with open(cmake, encoding="utf-8") as f:
            m = re.search(r"project\(\s*physpool\s+VERSION\s+([0-9.]+)", f.read())
    except OSError:
        m = None
    return m.group(1) if m else "0+unknown"


def version() -> str:
    """The installed distribution's version, else the checkout's."""
    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.exists(os.path.join(here, "..", "..", "CMakeLists.txt")):
        return _from_checkout()  # the package used from its checkout
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version
        try:
            return dist_version("physpool")
        except PackageNotFoundError:
            return "0+unknown"
    except ImportError:
        return "0+unknown"
