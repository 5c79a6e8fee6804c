# SPDX-License-Identifier: Apache-2.0
"""What pyproject.toml cannot say: the version (the project's, from
../CMakeLists.txt, else $PHYSPOOL_VERSION) and the copy of the built
libphyspool-client.so.0 into the package (physpool/_native/), from
$PHYSPOOL_BUILD_DIR/client or ../build/client, when it is there.

Without a built library the package is installed pure and loads the
library from $PHYSPOOL_CLIENT_LIBRARY or the system loader
(`cmake --install`). Scratch files go to a temporary directory, not into
the checkout.
"""

import atexit
import os
import re
import shutil
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
SONAME = "libphyspool-client.so.0"


def project_version():
    cmake = os.path.join(HERE, "..", "CMakeLists.txt")
    if os.path.exists(cmake):
        with open(cmake, encoding="utf-8") as f:
            m = re.search(r"project\(\s*physpool\s+VERSION\s+([0-9.]+)", f.read())
        if m:
            return m.group(1)
    env = os.environ.get("PHYSPOOL_VERSION")
    if env:
        return env
    sys.exit("physpool: no version: ../CMakeLists.txt has no project(physpool VERSION ...)"
             " and $PHYSPOOL_VERSION is not set")


def built_library():
    build = os.environ.get("PHYSPOOL_BUILD_DIR") or os.path.join(HERE, "..", "build")
    path = os.path.join(build, "client", SONAME)
    return os.path.realpath(path) if os.path.exists(path) else None


LIBRARY = built_library()


class BuildPy(build_py):
    """build_py, plus the built library copied to physpool/_native/."""

    def run(self):
        super().run()
        if LIBRARY is None:
            print(f"physpool: no built {SONAME} (make build): not bundled; the package will "
                  "load $PHYSPOOL_CLIENT_LIBRARY or the system's", file=sys.stderr)
            return
        native = os.path.join(self.build_lib, "physpool", "_native")
        os.makedirs(native, exist_ok=True)
        shutil.copyfile(LIBRARY, os.path.join(native, SONAME))
        print(f"physpool: bundled {LIBRARY}", file=sys.stderr)


class NativeDistribution(Distribution):
    """A wheel tagged for this platform when it carries the library."""

    def has_ext_modules(self):
        return LIBRARY is not None


scratch = tempfile.mkdtemp(prefix="physpool-setup-")
atexit.register(shutil.rmtree, scratch, True)

setup(
    version=project_version(),
    cmdclass={"build_py": BuildPy},
    distclass=NativeDistribution,
    options={"build": {"build_base": os.path.join(scratch, "build")},
             "egg_info": {"egg_base": scratch}},
)
