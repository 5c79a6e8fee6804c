#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs physpool into a scratch prefix, builds examples/fill_region and
# examples/arena against the installed package (CMake), fill_region again
# with the compiler and pkg-config alone (physpool-client.pc), and runs them
# against a real physpoold. Everything the
# daemon touches (socket, fd socket, lease store, sim backing) is in one
# private mktemp directory, never the host's /run/physpool or /dev/shm.
# usage: install_example_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d /tmp/physpool-install-XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
test -f "$work/prefix/lib/cmake/physpool/physpoolConfig.cmake"
test -f "$work/prefix/include/physpool/physpool.h"
cmake -S "$src/examples/fill_region" -B "$work/example" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
cmake --build "$work/example" > "$work/build.log"
cmake -S "$src/examples/arena" -B "$work/arena" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/arena-configure.log"
cmake --build "$work/arena" > "$work/arena-build.log"
# pkg-config: the C example with cc and nothing else; the C++ header too
# (Abseil comes through the .pc's Requires).
pc="$work/prefix/lib/pkgconfig/physpool-client.pc"
test -f "$pc"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
pkg-config --exists --print-errors physpool-client
[ "$(pkg-config --modversion physpool-client)" = "$(sed -n 's/^Version: //p' "$pc")" ]
cc -o "$work/fill_region_pc" "$src/examples/fill_region/fill_region.c" \
  $(pkg-config --cflags --libs physpool-client)
cat > "$work/pc_cxx.cc" <<'CC'
#include <physpool/client.h>
int main() { return absl::InternalError("links Abseil").ok() ? 1 : 0; }
CC
c++ -std=c++17 -o "$work/pc_cxx" "$work/pc_cxx.cc" $(pkg-config --cflags --libs physpool-client)
LD_LIBRARY_PATH="$work/prefix/lib" "$work/pc_cxx"
unset PKG_CONFIG_PATH
cat > "$work/physpoold.yaml" <<YAML
listen:
  unix: $work/physpool.sock
  fd_socket: $work/physpool.sock.fds
  tcp: ""
metrics:
  listen: ""
store:
  path: $work/leases.db
source:
  type: sim
  sim:
    dir: $work/sim
    segments:
      - {bytes: 16777216, freelist: 0, numa: 0}
implicit_tenant: true
YAML
"$build/server/physpoold" --config "$work/physpoold.yaml" \
  --ready-file "$work/ready.json" 2> "$work/physpoold.log" &
pid=$!
for _ in $(seq 200); do [ -f "$work/ready.json" ] && break; sleep 0.05; done
test -f "$work/ready.json" || { cat "$work/physpoold.log"; exit 1; }
out=$(LD_LIBRARY_PATH="$work/prefix/lib" PHYSPOOL_ENDPOINT="unix:$work/physpool.sock" \
      "$work/example/fill_region" 3000000)
echo "$out"
grep -q "^lease l-" <<< "$out"
grep -q "^run 0: iova 0x" <<< "$out"
grep -q "^filled and verified$" <<< "$out"
out=$(LD_LIBRARY_PATH="$work/prefix/lib" PHYSPOOL_ENDPOINT="unix:$work/physpool.sock" \
      "$work/fill_region_pc" 1000000)
grep -q "^lease l-" <<< "$out"
grep -q "^filled and verified$" <<< "$out"
out=$(LD_LIBRARY_PATH="$work/prefix/lib" PHYSPOOL_ENDPOINT="unix:$work/physpool.sock" \
      "$work/arena/arena_example" 40)
grep -q "^buffer 39: iova 0x" <<< "$out"
grep -q "^arena: ok$" <<< "$out"
# The daemon used the private store and backing, nothing of the host's.
test -s "$work/leases.db"
ls "$work/sim" | grep -q .
echo "installed package: examples built (CMake and pkg-config) and ran (daemon state in $work)"
