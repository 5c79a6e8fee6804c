#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The README's quick start, line after line in one shell, as written: the
# fenced block after "The quick start, line after line in one terminal".
# It runs in its own mount and network namespaces (tmpfs over /run/physpool
# and /dev/shm, its own loopback), so that it neither meets nor leaves a
# daemon, a socket, a store or a port of the host.
#
# usage: quickstart_test.sh SOURCE_DIR
set -euo pipefail
src=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (unshare of mount and network namespaces)"
command -v unshare > /dev/null || fail "unshare (util-linux) is missing"
command -v ip > /dev/null || fail "ip (iproute2) is missing"
block=$(awk '/The quick start, line after line in one terminal/ {found=1; next}
             found && /^```sh$/ {inside=1; next}
             inside && /^```$/ {exit}
             inside {print}' "$src/README.md")
[ -n "$block" ] || fail "no quick start block in README.md"
grep -q '^make run' <<< "$block" || fail "the quick start does not start with make run"
out=$(mktemp -d /tmp/physpool-quickstart.XXXXXX)
trap 'rm -rf "$out"' EXIT
printf '%s\n' "$block" > "$out/block.sh"
# Each line in turn, in one shell; stop at the first that fails.
unshare --mount --net bash -euo pipefail -c '
  ip link set lo up
  mkdir -p /run/physpool
  mount -t tmpfs -o mode=0755 tmpfs /run/physpool
  mount -t tmpfs tmpfs /dev/shm
  cd "$1"
  n=0
  while IFS= read -r line; do
    n=$((n + 1))
    [ -z "$line" ] && continue
    echo "+ $line"
    bash -euo pipefail -c "$line" || { echo "FAIL: line $n: $line" >&2; exit 1; }
  done < "$2/block.sh"
  # make stop stopped it: nothing serves on the default socket any more.
  if build/cli/physpoolctl health > /dev/null 2>&1; then
    echo "FAIL: a daemon still answers after the quick start" >&2; exit 1
  fi
' quickstart "$src" "$out" > "$out/log" 2>&1 || { cat "$out/log" >&2; fail "the quick start"; }
cat "$out/log"
grep -q '^lease l-' "$out/log" || fail "alloc printed no lease"
grep -q '^granted: ' "$out/log" || fail "alloc did not return with the lease granted"
grep -q 'physpoolctl alloc' "$out/log" || fail "lease list did not show the lease"
echo "PASS: the README quick start, line after line"
