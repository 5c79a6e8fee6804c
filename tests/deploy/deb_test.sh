#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The Debian package (make deb; cmake/Packaging.cmake): CPack builds it from
# the build tree into a scratch directory; its control files are checked
# (conffiles, Depends from dpkg-shlibdeps, shlibs, the ldconfig trigger);
# then it is installed with dpkg into a throwaway root (--root with its own
# admin directory, maintainer scripts run outside a chroot with DPKG_ROOT,
# which they honour), so that dpkg itself registers the conffile and runs
# postinst (the physpool user, created in the root by systemd-sysusers).
# There: each file and its mode, no RPATH, stripped ELF files, the units'
# ExecStart, the man pages render, the completions, and the installed
# physpoolctl runs with the installed library. Then lintian: no E: line.
# Last, dpkg -r keeps the conffile and dpkg -P removes it.
# Usage: deb_test.sh BUILD_DIR CPACK VERSION
set -euo pipefail
build=${1:?usage: deb_test.sh BUILD_DIR CPACK VERSION}
cpack=${2:?} version=${3:?}
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in dpkg dpkg-deb dpkg-query dpkg-shlibdeps lintian man readelf systemd-sysusers; do
  command -v "$tool" > /dev/null || fail "$tool not found: make deps installs \
dpkg-dev, lintian, man-db, binutils and systemd"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Build it.
"$cpack" --config "$build/CPackConfig.cmake" -B "$tmp/out" > "$tmp/cpack.log" 2>&1 ||
  fail "cpack failed: $(cat "$tmp/cpack.log")"
debs=("$tmp"/out/*.deb)
[[ ${#debs[@]} == 1 && -f ${debs[0]} ]] || fail "cpack made ${#debs[@]} packages: $(cat "$tmp/cpack.log")"
deb=${debs[0]}
[[ $(basename "$deb") == physpool_${version}-1_$(dpkg --print-architecture).deb ]] ||
  fail "unexpected package name $(basename "$deb")"
echo "built $(basename "$deb")"

# Control files.
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == physpool && $(field Version) == "$version-1" ]] || fail "Package/Version: $(field Package) $(field Version)"
for dep in libc6 libstdc++6 libgrpc++ libsystemd0 libyaml-cpp; do
  [[ $(field Depends) == *"$dep"* ]] || fail "Depends lacks $dep (dpkg-shlibdeps?): $(field Depends)"
done
[[ $(dpkg-deb -I "$deb" conffiles) == /etc/physpool/physpoold.yaml ]] ||
  fail "conffiles: $(dpkg-deb -I "$deb" conffiles)"
dpkg-deb -I "$deb" shlibs | grep -qE '^libphyspool-client 0 physpool \(>= ' ||
  fail "shlibs: $(dpkg-deb -I "$deb" shlibs)"
dpkg-deb -I "$deb" triggers | grep -qx 'activate-noawait ldconfig' ||
  fail "no ldconfig trigger: $(dpkg-deb -I "$deb" triggers)"
for s in postinst prerm postrm; do
  dpkg-deb -I "$deb" "$s" | head -1 | grep -qx '#!/bin/sh' || fail "$s is not a sh script"
done

# Install it into a throwaway root.
root=$tmp/root
admin=$root/var/lib/dpkg
mkdir -p "$admin/info" "$admin/updates" "$admin/triggers"
touch "$admin/status" "$admin/available"
dpkg_root() {
  dpkg --root="$root" --admindir="$admin" --log=/dev/null \
    --force-script-chrootless --force-depends --force-not-root "$@"
}
dpkg_root -i "$deb" > "$tmp/dpkg.log" 2>&1 || fail "dpkg -i: $(cat "$tmp/dpkg.log")"
[[ $(dpkg-query --admindir="$admin" -W -f='${Status}' physpool) == "install ok installed" ]] ||
  fail "not installed: $(cat "$tmp/dpkg.log")"
dpkg-query --admindir="$admin" -W -f='${Conffiles}' physpool |
  grep -q '^ /etc/physpool/physpoold.yaml [0-9a-f]\{32\}$' ||
  fail "dpkg did not register the conffile: $(dpkg-query --admindir="$admin" -W -f='${Conffiles}' physpool)"
# postinst: the user and group of sysusers.d, in the root only.
grep -q '^physpool:x:[0-9]*:[0-9]*:physpool daemon:/var/lib/physpool:/usr/sbin/nologin$' "$root/etc/passwd" ||
  fail "postinst did not create the physpool user in the root: $(cat "$root/etc/passwd" 2>&1)"
grep -q '^physpool:' "$root/etc/group" || fail "postinst did not create the physpool group"

# Files and modes.
expect() {  # MODE PATH...
  local mode=$1 f
  shift
  for f in "$@"; do
    [[ -e $root$f && ! -L $root$f ]] || fail "$f missing from the package"
    [[ $(stat -c %a "$root$f") == "$mode" ]] || fail "$f has mode $(stat -c %a "$root$f"), not $mode"
    [[ $(stat -c %U:%G "$root$f") == root:root || $(id -u) != 0 ]] || fail "$f is not root's"
  done
}
bins=(/usr/bin/physpoold /usr/bin/physpoolctl /usr/bin/physpool-keeper /usr/bin/physpool-dra)
pages=(/usr/share/man/man1/physpoolctl.1.gz /usr/share/man/man8/physpoold.8.gz
       /usr/share/man/man8/physpool-keeper.8.gz /usr/share/man/man8/physpool-dra.8.gz)
expect 755 "${bins[@]}"
expect 644 /usr/lib/libphyspool-client.so.$version /etc/physpool/physpoold.yaml \
  /usr/lib/systemd/system/physpoold.service /usr/lib/systemd/system/physpool-keeper.service \
  /usr/lib/sysusers.d/physpool.conf /usr/lib/tmpfiles.d/physpool.conf \
  /usr/include/physpool/client.h /usr/include/physpool/physpool.h \
  /usr/lib/cmake/physpool/physpoolConfig.cmake /usr/lib/cmake/physpool/physpoolTargets.cmake \
  /usr/lib/pkgconfig/physpool-client.pc \
  /usr/share/bash-completion/completions/physpoolctl /usr/share/zsh/vendor-completions/_physpoolctl \
  /usr/share/doc/physpool/copyright /usr/share/doc/physpool/changelog.Debian.gz \
  /usr/share/doc/physpool/deploy.md "${pages[@]}"
[[ $(readlink "$root/usr/lib/libphyspool-client.so.0") == libphyspool-client.so.$version &&
   $(readlink "$root/usr/lib/libphyspool-client.so") == libphyspool-client.so.0 ]] ||
  fail "library symlinks: $(ls -l "$root"/usr/lib/libphyspool-client.so*)"
cmp -s "$root/etc/physpool/physpoold.yaml" "$(dirname "$0")/../../deploy/systemd/physpoold.yaml" ||
  fail "/etc/physpool/physpoold.yaml is not deploy/systemd/physpoold.yaml"
head -1 "$root/usr/share/doc/physpool/copyright" |
  grep -qx 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' ||
  fail "copyright is not machine-readable"
zcat "$root/usr/share/doc/physpool/changelog.Debian.gz" | head -1 | grep -q "^physpool ($version-1) " ||
  fail "changelog.Debian.gz does not start with physpool ($version-1)"
# Nothing of the build or the tests in it.
if dpkg-deb -c "$deb" | grep -E 'test|bench|fuzz|\.a$' | grep -v '/usr/include/'; then
  fail "the package holds test, benchmark or static files"
fi

# ELF files: stripped, no RPATH/RUNPATH.
for f in "${bins[@]}" /usr/lib/libphyspool-client.so.$version; do
  ! readelf -d "$root$f" | grep -qE 'RPATH|RUNPATH' || fail "$f has an RPATH: $(readelf -d "$root$f" | grep -E 'RPATH|RUNPATH')"
  ! readelf -S "$root$f" | grep -qE '\.symtab|\.debug_info' || fail "$f is not stripped"
done

# The units start the installed binaries with the installed config.
grep -qx 'ExecStart=/usr/bin/physpoold --config /etc/physpool/physpoold.yaml' \
  "$root/usr/lib/systemd/system/physpoold.service" || fail "physpoold.service ExecStart"
grep -qx 'ExecStart=/usr/bin/physpool-keeper --socket /run/physpool-keeper/keeper.sock' \
  "$root/usr/lib/systemd/system/physpool-keeper.service" || fail "physpool-keeper.service ExecStart"
grep -q '^Documentation=man:physpoold(8) file:///usr/share/doc/physpool/deploy.md$' \
  "$root/usr/lib/systemd/system/physpoold.service" || fail "physpoold.service Documentation"

# The man pages render.
for p in "${pages[@]}"; do
  out=$(MANWIDTH=80 man --warnings -l "$root$p" 2> "$tmp/man.err") || fail "man -l $p: $(cat "$tmp/man.err")"
  [[ ! -s $tmp/man.err ]] || fail "man --warnings -l $p: $(cat "$tmp/man.err")"
  grep -qx NAME <<< "$out" || fail "$p has no NAME"
done

# The installed physpoolctl with the installed library (and no other).
libs=$root/usr/lib
LD_LIBRARY_PATH=$libs ldd "$root/usr/bin/physpoolctl" | grep -q "libphyspool-client.so.0 => $libs/libphyspool-client.so.0 " ||
  fail "physpoolctl does not load the installed library: $(LD_LIBRARY_PATH=$libs ldd "$root/usr/bin/physpoolctl")"
v=$(LD_LIBRARY_PATH=$libs "$root/usr/bin/physpoolctl" --version) || fail "installed physpoolctl --version failed"
[[ $v == "physpoolctl $version "* ]] || fail "installed physpoolctl --version: $v"
for b in physpoold physpool-keeper physpool-dra; do
  v=$(LD_LIBRARY_PATH=$libs "$root/usr/bin/$b" --version) || fail "installed $b --version failed"
  [[ $v == "$b $version "* ]] || fail "installed $b --version: $v"
done

# lintian: no error (warnings are listed in docs/deploy.md, "Debian package").
rc=0
lintian --allow-root --no-tag-display-limit "$deb" > "$tmp/lintian.log" 2>&1 || rc=$?
if grep -q '^E: ' "$tmp/lintian.log" || [[ $rc != 0 ]]; then
  fail "lintian exited $rc (1: errors, 2: it could not run):
$(cat "$tmp/lintian.log")"
fi
echo "lintian: $(grep -c '^W: ' "$tmp/lintian.log" || true) warnings, no error"
grep '^W: ' "$tmp/lintian.log" || true

# Remove keeps the conffile; purge removes it.
dpkg_root -r physpool > "$tmp/dpkg.log" 2>&1 || fail "dpkg -r: $(cat "$tmp/dpkg.log")"
[[ ! -e $root/usr/bin/physpoold && -f $root/etc/physpool/physpoold.yaml ]] ||
  fail "after dpkg -r: binaries should be gone and the conffile kept"
dpkg_root -P physpool > "$tmp/dpkg.log" 2>&1 || fail "dpkg -P: $(cat "$tmp/dpkg.log")"
[[ ! -e $root/etc/physpool/physpoold.yaml ]] || fail "dpkg -P left the conffile"
echo "OK: $(basename "$deb") installs, holds what it should and passes lintian"
