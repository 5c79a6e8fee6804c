#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Makes the Debian 12 base image locally (no registry is reachable):
# debootstrap --variant=minbase bookworm, packed once into a cached tarball,
# then `podman import`ed as localhost/physpool-debian:bookworm.
#   usage: make-base.sh           (idempotent: reuses the image or the tarball)
# PHYSPOOL_CACHE (default /var/cache/physpool) holds the tarball;
# DEBIAN_MIRROR (default http://deb.debian.org/debian) is the mirror.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
image=localhost/physpool-debian:bookworm
cache=${PHYSPOOL_CACHE:-/var/cache/physpool}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
tarball=$cache/debian-bookworm-minbase.tar

for tool in podman debootstrap; do
  command -v "$tool" > /dev/null || {
    echo "make-base.sh: $tool is not installed (make deps installs it)" >&2
    exit 1
  }
done
if podman image exists "$image"; then
  echo "base image $image exists"
  exit 0
fi
if [ ! -s "$tarball" ]; then
  mkdir -p "$cache"
  root=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap --variant=minbase bookworm ($mirror) ..."
  debootstrap --variant=minbase bookworm "$root" "$mirror" > "$cache/debootstrap.log" 2>&1 || {
    tail -20 "$cache/debootstrap.log" >&2
    exit 1
  }
  # Updates and security fixes too, as on the host.
  cat > "$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
  # Smaller layers: no apt cache, no docs or man pages in images.
  cat > "$root/etc/apt/apt.conf.d/90physpool" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
APT
  cat > "$root/etc/dpkg/dpkg.cfg.d/90physpool-nodoc" <<'DPKG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
podman import --change 'CMD ["/bin/bash"]' "$tarball" "$image" > /dev/null
echo "imported $image from $tarball"
