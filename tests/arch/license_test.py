#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Every source file the project wrote carries its license (LICENSE,
Apache-2.0) as an SPDX line; what it vendors is named in NOTICE.

The files: those in git (tracked, or new and not ignored; every file under
ROOT outside build directories when ROOT is not a git checkout) that are
C/C++ (.c .cc .h), Python (.py), shell (.sh), CMake (CMakeLists.txt, .cmake,
.cmake.in), or have a shell or Python #! line. Their first line, or the
second after a #! line, is the SPDX line in the file's comment syntax:
    // SPDX-License-Identifier: Apache-2.0      (C++; C may use /* ... */)
    # SPDX-License-Identifier: Apache-2.0       (Python, shell, CMake)
Not checked: VENDORED (others' files, listed in NOTICE), testdata, and
other kinds (JSON, YAML, Markdown, protos, systemd units).

Usage: license_test.py ROOT         exit 1 listing each file without it
       license_test.py --fix ROOT   adds the line where it is missing
       license_test.py --self-test  the check against a planted tree
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

SPDX = "SPDX-License-Identifier: Apache-2.0"
# Others' files, kept as they were published (NOTICE names them).
VENDORED = ("proto/k8s/", "tests/deploy/cdi-schema/")
SKIP_DIRS = {".git", "node_modules", "__pycache__", ".fuzz-corpus"}
HEADER = re.compile(r"^(//|#|/\*) " + re.escape(SPDX) + r"( \*/)?$")


def kind(rel, first_line):
    """'c', 'hash' (a # comment language) or None (not checked)."""
    name = os.path.basename(rel)
    if rel.startswith(VENDORED) or "/testdata/" in f"/{rel}":
        return None
    if name.endswith((".c", ".cc", ".h")):
        return "c"
    if (name.endswith((".py", ".sh", ".cmake", ".cmake.in"))
            or name == "CMakeLists.txt"):
        return "hash"
    if first_line.startswith("#!") and re.search(r"\b(sh|bash|python3?)\b",
                                                 first_line):
        return "hash"
    return None


def files(root):
    try:
        out = subprocess.run(
            ["git", "-C", root, "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], capture_output=True, check=True).stdout
        top = subprocess.run(["git", "-C", root, "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=True).stdout
        if os.path.realpath(top.strip()) != os.path.realpath(root):
            raise RuntimeError("not the top of a checkout")
        names = sorted(set(out.decode().split("\0")) - {""})
    except (OSError, subprocess.CalledProcessError, RuntimeError):
        names = []
        for dirpath, dirs, fs in os.walk(root):
            dirs[:] = [d for d in dirs
                       if d not in SKIP_DIRS and not d.startswith("build")]
            names += [os.path.relpath(os.path.join(dirpath, f), root) for f in fs]
        names.sort()
    for rel in names:
        path = os.path.join(root, rel)
        if not os.path.isfile(path) or os.path.islink(path):
            continue  # deleted in the work tree, or a link
        with open(path, "rb") as f:
            head = f.read(4096)
        if b"\0" in head:
            continue  # binary
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace")
        k = kind(rel, first)
        if k:
            yield rel, path, k


def has_header(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [f.readline().rstrip("\n") for _ in range(2)]
    if lines[0].startswith("#!"):
        return bool(HEADER.match(lines[1]))
    return bool(HEADER.match(lines[0]))


def check(root):
    missing, checked = [], 0
    for rel, path, _ in files(root):
        checked += 1
        if not has_header(path):
            missing.append(rel)
    return checked, missing


def fix(root):
    fixed = []
    for rel, path, k in files(root):
        if has_header(path):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if k == "c":
            # C's comment style in C files and in headers written in it.
            c_style = rel.endswith(".c") or text.startswith("/*")
            line = f"/* {SPDX} */\n" if c_style else f"// {SPDX}\n"
        else:
            line = f"# {SPDX}\n"
        if text.startswith("#!"):
            shebang, _, rest = text.partition("\n")
            text = shebang + "\n" + line + rest
        else:
            text = line + text
        mode = os.stat(path).st_mode
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(path, mode)
        fixed.append(rel)
    return fixed


def self_test():
    root = tempfile.mkdtemp(prefix="physpool-license-")
    try:
        plant = {
            "good.cc": f"// {SPDX}\nint x;\n",
            "good.c": f"/* {SPDX} */\nint x;\n",
            "good.py": f"#!/usr/bin/python3\n# {SPDX}\n",
            "sub/CMakeLists.txt": f"# {SPDX}\nproject(x)\n",
            "bad.h": "// no license\n",
            "bad_c.h": "/* a C header */\n",
            "bad.sh": f"#!/bin/sh\necho\n# {SPDX}\n",  # too late
            "sub/bad.cmake": "set(x 1)\n",
            "tools/run": "#!/usr/bin/env bash\ntrue\n",
            "bad_wording.py": "# SPDX-License-Identifier: MIT\n",
            "proto/k8s/x/vendored.cc": "// theirs\n",
            "tests/deploy/cdi-schema/x.py": "# theirs\n",
            "cli/testdata/seed.py": "data\n",
            "data.json": "{}\n",
            "README.md": "text\n",
        }
        for rel, text in plant.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w") as f:
                f.write(text)
        want = ["bad.h", "bad.sh", "bad_c.h", "bad_wording.py", "sub/bad.cmake", "tools/run"]
        checked, missing = check(root)
        if sorted(missing) != want or checked != 10:
            print(f"FAIL: found {sorted(missing)} of {checked}, want {want} of 10")
            return 1
        fixed = fix(root)
        if sorted(fixed) != want or check(root)[1]:
            print(f"FAIL: --fix fixed {sorted(fixed)}, left {check(root)[1]}")
            return 1
        with open(os.path.join(root, "tools/run")) as f:
            if f.read() != f"#!/usr/bin/env bash\n# {SPDX}\ntrue\n":
                print("FAIL: --fix did not keep the #! line first")
                return 1
        with open(os.path.join(root, "bad_c.h")) as f:
            if not f.read().startswith(f"/* {SPDX} */\n/* a C header"):
                print("FAIL: --fix did not use C's comments in a C header")
                return 1
        print(f"license self-test: {len(want)} planted files found and fixed")
        return 0
    finally:
        shutil.rmtree(root)


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) == 3 and argv[1] == "--fix":
        for rel in fix(argv[2]):
            print(f"added: {rel}")
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = argv[1]
    problems = []
    for name, first in (("LICENSE", "Apache License"), ("NOTICE", None)):
        try:
            with open(os.path.join(root, name), encoding="utf-8") as f:
                text = f.read()
            if first and first not in text.split("\n", 3)[1]:
                problems.append(f"{name}: not the Apache-2.0 text")
        except OSError as e:
            problems.append(f"{name}: {e.strerror}")
    checked, missing = check(root)
    problems += [f"{rel}: no '{SPDX}' line at the top" for rel in missing]
    for p in problems:
        print(p)
    if problems:
        print(f"FAIL: {len(problems)} problems ({checked} files checked); "
              f"tests/arch/license_test.py --fix ROOT adds the missing lines")
        return 1
    print(f"license: {checked} source files carry '{SPDX}'; LICENSE, NOTICE")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
