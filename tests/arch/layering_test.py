#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The daemon's layers point one way (docs/architecture.md).

server/ holds, from the bottom up: core/ <- store/ <- memory/ <- lease/ <-
the coordinator (the files directly in server/) <- rpc/ <- daemon/. A file
may include its own layer and those below it, never one above. Only rpc/
and daemon/ include gRPC (grpcpp/, grpc/) or the generated protos
(physpool/v1/*.pb.h); prometheus-cpp only there as well.

Usage: layering_test.py ROOT     checks ROOT/server (exit 1 naming each
                                 include that points the wrong way)
       layering_test.py --self-test ROOT
                                 copies ROOT/server, plants one wrong
                                 include of each kind and expects each to
                                 be found (the check itself can fail)
"""
import os
import re
import shutil
import sys
import tempfile

LAYERS = ["core", "store", "memory", "lease", "", "rpc", "daemon"]
RPC_ONLY = re.compile(r'^(grpcpp/|grpc/|physpool/v1/.*\.pb\.h$|prometheus/)')
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')


def layer_of_path(rel):
    """The layer index of a path relative to server/ ("core/turn.h")."""
    parts = rel.split("/")
    folder = parts[0] if len(parts) > 1 else ""
    if folder not in LAYERS:
        return None
    return LAYERS.index(folder)


def check(server_dir):
    problems = []
    files = 0
    for dirpath, _, names in os.walk(server_dir):
        for name in sorted(names):
            if not name.endswith((".h", ".cc")):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, server_dir)
            mine = layer_of_path(rel)
            if mine is None:
                problems.append(f"server/{rel}: in no layer (folders: "
                                f"{', '.join(l or '(top)' for l in LAYERS)})")
                continue
            files += 1
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = m.group(1)
                    where = f"server/{rel}:{lineno}"
                    if RPC_ONLY.match(target) and mine < LAYERS.index("rpc"):
                        problems.append(
                            f"{where}: includes {target}: gRPC, the "
                            f"generated protos and prometheus-cpp belong "
                            f"in rpc/ and daemon/ only")
                    if not target.startswith("server/"):
                        continue
                    theirs = layer_of_path(target[len("server/"):])
                    if theirs is None:
                        problems.append(f"{where}: includes {target}, in no "
                                        f"layer")
                    elif theirs > mine:
                        problems.append(
                            f"{where}: includes {target}: "
                            f"{LAYERS[mine] or 'the coordinator'} may not "
                            f"depend on {LAYERS[theirs] or 'the coordinator'}"
                            f" (above it)")
    return files, problems


def self_test(root):
    """Plants each kind of wrong include in a copy; each must be found."""
    plants = [
        ("core/turn.h", '#include "server/store/durable.h"\n'),
        ("store/durable.h", '#include "server/memory/recycle.h"\n'),
        ("memory/recycle.h", '#include "server/lease/grant.h"\n'),
        ("lease/grant.h", '#include "server/pool_manager.h"\n'),
        ("pool_manager.h", '#include "server/rpc/convert.h"\n'),
        ("rpc/convert.h", '#include "server/daemon/config.h"\n'),
        ("lease/grant.cc", '#include <grpcpp/grpcpp.h>\n'),
        ("pool_manager.cc", '#include "physpool/v1/physpool.pb.h"\n'),
    ]
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for rel, line in plants:
            copy = os.path.join(tmp, "server")
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(os.path.join(root, "server"), copy)
            with open(os.path.join(copy, rel), "a", encoding="utf-8") as f:
                f.write(line)
            _, problems = check(copy)
            if not any(p.startswith(f"server/{rel}:") for p in problems):
                print(f"FAIL: planting {line.strip()} in server/{rel} was "
                      f"not found")
                failed = True
            else:
                print(f"ok: {line.strip()} in server/{rel} is refused")
    return 1 if failed else 0


def main():
    args = sys.argv[1:]
    if args and args[0] == "--self-test":
        sys.exit(self_test(args[1]))
    if len(args) != 1:
        sys.exit(__doc__)
    files, problems = check(os.path.join(args[0], "server"))
    for p in problems:
        print(p)
    if files == 0:
        print("no files under server/: wrong ROOT?")
        sys.exit(1)
    print(f"{files} files, {len(problems)} includes pointing the wrong way")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
