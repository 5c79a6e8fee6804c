#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Builds the e2e guest: a Debian kernel (downloaded with apt-get download,
# unpacked, never installed) and a busybox initramfs holding physpoold, the
# e2e tenant and the shared libraries they need.
# Usage: build_guest.sh BUILD_DIR OUT_DIR
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "$1" && pwd)
OUT=$2
mkdir -p "$OUT/debs"
for tool in busybox cpio depmod modprobe apt-get dpkg gzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "build_guest: $tool is missing (make deps installs it)"; exit 1; }
done
[ -x /bin/busybox ] || { echo "build_guest: /bin/busybox missing (busybox-static)"; exit 1; }

# 1. The kernel: the image package $KMETA depends on. bookworm's 6.12
# kernel, for its built-in udmabuf (CONFIG_UDMABUF=y; the default 6.1 has
# none): the memfd phase runs with a udmabuf per lease.
KMETA=${KMETA:-linux-image-6.12-amd64}
resolve() { apt-cache depends "$KMETA" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
PKG=$(resolve)
if [ -z "$PKG" ]; then  # no package lists yet
  apt-get update -qq || true
  PKG=$(resolve)
fi
[ -n "$PKG" ] || { echo "build_guest: cannot resolve $KMETA (apt-get update failed?)"; exit 1; }
KDIR="$OUT/kernel/$PKG"
if [ ! -d "$KDIR/boot" ]; then
  # Stale lists name a version the mirror no longer has: update and retry.
  (cd "$OUT/debs" && { ls "$PKG"_*.deb >/dev/null 2>&1 || apt-get download "$PKG" ||
    { apt-get update -qq && apt-get download "$PKG"; }; })
  mkdir -p "$KDIR"
  dpkg -x "$OUT"/debs/"$PKG"_*.deb "$KDIR"
fi
KV=$(ls "$KDIR/lib/modules")
depmod -b "$KDIR" "$KV"  # the .deb ships no modules.dep
cp "$KDIR/boot/vmlinuz-$KV" "$OUT/vmlinuz"
echo "build_guest: kernel $KV"

# 2. The initramfs.
R="$OUT/root"
rm -rf "$R"
mkdir -p "$R"/{bin,sbin,proc,sys,dev,etc,lib64}
cp /bin/busybox "$R/bin/busybox"
install -m 755 "$HERE/init" "$R/init"
install -m 755 "$BUILD/server/physpoold" "$R/bin/physpoold"
install -m 755 "$BUILD/tests/e2e/e2e_tenant" "$R/bin/e2e_tenant"
install -m 755 "$BUILD/cli/physpoolctl" "$R/bin/physpoolctl"
install -m 755 "$BUILD/server/physpool-keeper" "$R/bin/physpool-keeper"
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
for conf in physpool physpool-memfd physpool-domains physpool-numa physpool-1g; do
  sed -e "s/@EDU_SHA@/$(sha edu-token)/" -e "s/@PLAIN_SHA@/$(sha plain-token)/" \
      -e "s/@A_SHA@/$(sha a-token)/" -e "s/@B_SHA@/$(sha b-token)/" \
      -e "s/@OPS_SHA@/$(sha ops-token)/" -e "s/@C_SHA@/$(sha c-token)/" \
      "$HERE/$conf.yaml.in" > "$R/etc/$conf.yaml.in"
done
# Shared libraries, by basename into /lib/x86_64-linux-gnu (init sets
# LD_LIBRARY_PATH), and the dynamic loader where binaries look for it.
mkdir -p "$R/lib/x86_64-linux-gnu"
for bin in "$BUILD/server/physpoold" "$BUILD/tests/e2e/e2e_tenant" "$BUILD/cli/physpoolctl" "$BUILD/server/physpool-keeper"; do
  ldd "$bin" | awk '/=> \//{print $3}'
done | sort -u | while read -r lib; do
  cp -L "$lib" "$R/lib/x86_64-linux-gnu/$(basename "$lib")"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/"
# VFIO modules in dependency order, decompressed for busybox insmod.
: > "$R/etc/modules.list"
for top in vfio-pci vfio_iommu_type1; do
  modprobe -d "$KDIR" -S "$KV" --show-depends "$top" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  rel=${ko#"$KDIR"/}; rel=${rel%.xz}; rel=${rel%.zst}
  mkdir -p "$R/$(dirname "$rel")"
  case "$ko" in
    *.xz) xz -dc "$ko" > "$R/$rel" ;;
    *.zst) zstd -dcq "$ko" > "$R/$rel" ;;
    *) cp "$ko" "$R/$rel" ;;
  esac
  echo "/$rel" >> "$R/etc/modules.list"
done
(cd "$R" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) > "$OUT/initramfs.cpio.gz"
echo "build_guest: initramfs $(du -h "$OUT/initramfs.cpio.gz" | cut -f1), $(wc -l < "$R/etc/modules.list") modules"
