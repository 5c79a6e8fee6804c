#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make image: the local Debian 12 base (make-base.sh), then the multi-stage
# Containerfile over the repository.
#   usage: build-image.sh [IMAGE]   (default localhost/physpool:dev)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
image=${1:-localhost/physpool:dev}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
"$here/make-base.sh"
start=$(date +%s)
# The revision for --version and physpool_build_info (.git stays out of the
# build context).
revision=$(git -C "$src" rev-parse --short HEAD 2> /dev/null || echo unknown)
# Host networking for apt-get in the build stages: no bridge or firewall
# set-up is needed on the build machine.
podman build --network host --ignorefile "$here/containerignore" \
  --build-arg "PHYSPOOL_REVISION=$revision" \
  -f "$here/Containerfile" -t "$image" "$src"
echo "built $image in $(( $(date +%s) - start )) s;" \
  "size $(podman image inspect --format '{{.Size}}' "$image") bytes"
