#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Python package, installed as the README says and tested for real:
#  1. a FRESH venv (system site packages: Debian's numpy) in a private
#     temporary directory, and `pip install --no-build-isolation --no-index`
#     of python/ into it -- the commands of `make python`, offline;
#  2. package_test.py with that venv's python (unittest) against real
#     physpoold daemons (token-authenticated tenants; pp_daemon.py);
#  3. mypy --strict on the installed package and on the typed examples.
# A missing tool fails the test, naming it; nothing is skipped.
# usage: python_package_test.sh SOURCE_DIR BUILD_DIR PHYSPOOLD PHYSPOOLCTL ABI_PROBE
set -euo pipefail
src=$1
build=$2
export PHYSPOOL_TEST_PHYSPOOLD=$3 PHYSPOOL_TEST_PHYSPOOLCTL=$4 PHYSPOOL_TEST_ABI_PROBE=$5
export PHYSPOOL_TEST_SOURCE=$src PHYSPOOL_TEST_BUILD=$build
python=/usr/bin/python3

fail() { echo "FAIL: $*" >&2; exit 1; }
"$python" -c 'import venv, ensurepip' 2>/dev/null ||
  fail "$python cannot make venvs: install python3-venv (make deps)"
"$python" -c 'import setuptools, wheel' 2>/dev/null ||
  fail "setuptools or wheel missing: install python3-setuptools python3-wheel (make deps)"
"$python" -c 'import numpy' 2>/dev/null || fail "numpy missing: install python3-numpy (make deps)"
command -v mypy > /dev/null || fail "mypy not found: install mypy (make deps)"
test -e "$build/client/libphyspool-client.so.0" ||
  fail "$build/client/libphyspool-client.so.0 not built"

work=$(mktemp -d /tmp/physpool-pypkg-XXXXXX)
trap 'rm -rf "$work"' EXIT
export PHYSPOOL_TEST_WORK=$work
# Nothing from outside the checkout and Debian: no pip configuration, no
# wheel directories, no library or credentials from the environment.
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PHYSPOOL_CLIENT_LIBRARY \
      PHYSPOOL_ENDPOINT PHYSPOOL_TOKEN PHYSPOOL_TOKEN_FILE PHYSPOOL_LEASE PYTHONPATH
export PIP_CONFIG_FILE=/dev/null
# No __pycache__ in the checkout (the tests import from tests/python/).
export PYTHONDONTWRITEBYTECODE=1

echo "== install (make python's commands, into $work/venv)"
"$python" -m venv --system-site-packages "$work/venv"
PHYSPOOL_BUILD_DIR="$build" "$work/venv/bin/pip" install --no-build-isolation --no-index \
  "$src/python" > "$work/pip.log" 2>&1 || { cat "$work/pip.log"; fail "pip install"; }
grep -q "Successfully installed physpool" "$work/pip.log" || { cat "$work/pip.log"; fail "pip"; }
test -f "$work/venv/lib/"python3*/site-packages/physpool/_native/libphyspool-client.so.0 ||
  fail "the install did not bundle libphyspool-client.so.0"
test -f "$work/venv/lib/"python3*/site-packages/physpool/py.typed || fail "no py.typed"

echo "== tests (the venv's python, against physpoold)"
# From the work directory: `import physpool` must find the installed copy.
(cd "$work" && "$work/venv/bin/python" -X faulthandler "$src/tests/python/package_test.py" -v)

echo "== mypy --strict (the installed package, the examples, a typed client)"
(cd "$work" && mypy --strict --no-incremental --python-executable "$work/venv/bin/python" \
   -p physpool)
(cd "$work" && mypy --strict --no-incremental --python-executable "$work/venv/bin/python" \
   "$src/examples/allocate.py" "$src/examples/arena.py" "$src/tests/python/typed_example.py")
echo "python package: installed, tested and type-checked"
