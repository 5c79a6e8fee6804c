#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The container image, end to end: builds it (make image's script), runs it
# on the embedded default with the socket directory bind-mounted, and from
# outside the container checks health SERVING over the socket and over TCP,
# an allocation with physpoolctl, /metrics; then SIGTERM: exit code 0 and
# the time it took. Also what the image is: non-root user, physpoold as
# entrypoint, physpoolctl inside, no apt lists left.
#   usage: image_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
ctl=$build/cli/physpoolctl
image=${PHYSPOOL_TEST_IMAGE:-localhost/physpool:dev}
export CONTAINERS_CONF=$src/deploy/container/containers.conf

fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in podman debootstrap runc curl; do
  command -v "$tool" > /dev/null || fail "$tool is not installed (make deps installs it)"
done

ms() { echo $(( $(date +%s%N) / 1000000 )); }
start=$(ms)
"$src/deploy/container/build-image.sh" "$image" > /tmp/physpool-image-build.log 2>&1 || {
  tail -40 /tmp/physpool-image-build.log >&2
  fail "image build failed (log: /tmp/physpool-image-build.log)"
}
build_ms=$(( $(ms) - start ))
build_s=$(( build_ms / 1000 )).$(printf %03d $(( build_ms % 1000 )))
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image $image built in ${build_s} s, size $size bytes ($(( size / 1048576 )) MiB)"

# What the image is.
user=$(podman image inspect --format '{{.Config.User}}' "$image")
[ "$user" = "10001:10001" ] || fail "image user is '$user', want 10001:10001 (non-root)"
entry=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$image")
[ "$entry" = '["/usr/local/bin/physpoold"]' ] || fail "entrypoint is $entry"
podman run --rm --network none --entrypoint /usr/local/bin/physpoolctl "$image" --help > /dev/null \
  || fail "physpoolctl does not run in the image"
# --version: the project's version and the checkout's revision (passed in
# by build-image.sh: .git is not in the build context).
want_rev=$(git -C "$src" rev-parse --short HEAD 2> /dev/null || echo unknown)
out=$(podman run --rm --network none "$image" --version 2>&1) || fail "physpoold --version: $out"
grep -Eq "^physpoold [0-9]+\.[0-9]+\.[0-9]+ \(revision $want_rev, built [0-9]{4}-[0-9]{2}-[0-9]{2}\)\$" <<< "$out" \
  || fail "physpoold --version in the image: '$out' (want revision $want_rev)"
# physpool-keeper (the vfio overlay's entrypoint) runs a child and stops
# with it.
out=$(podman run --rm --network none --entrypoint /usr/local/bin/physpool-keeper "$image" \
  --socket /tmp/keeper/keeper.sock -- /bin/true 2>&1) \
  || fail "physpool-keeper does not run in the image: $out"
grep -q "the keeper stops" <<< "$out" || fail "physpool-keeper in the image: $out"
# physpool-dra (the dra overlay's second container) runs; outside a pod it
# says what it misses.
out=$(podman run --rm --network none --entrypoint /usr/local/bin/physpool-dra "$image" \
  --node-name=n1 2>&1 || true)
grep -q "KUBERNETES_SERVICE_HOST" <<< "$out" || fail "physpool-dra does not run in the image: $out"
# No daemon in that container: the example must run and say it cannot connect.
out=$(podman run --rm --network none --entrypoint /usr/local/bin/physpool-fill-region "$image" 0 2>&1 || true)
grep -q "^connect: .*physpool.sock" <<< "$out" \
  || fail "physpool-fill-region (the client example) does not run in the image: $out"
left=$(podman run --rm --network none --entrypoint /bin/sh "$image" -c \
  'ls /var/lib/apt/lists | grep -v -e "^lock$" -e "^partial$" | wc -l; ls /var/cache/apt/archives/*.deb 2>/dev/null | wc -l; command -v g++ cmake || true')
[ "$(echo "$left" | tr '\n' ' ')" = "0 0 " ] || fail "apt lists, .debs or build tools left in the image: $left"
for pkg in g++ cmake libgrpc++-dev; do
  if podman run --rm --network none --entrypoint /usr/bin/dpkg-query "$image" -W "$pkg" > /dev/null 2>&1; then
    fail "build package $pkg is in the runtime image"
  fi
done

# Run it: the embedded default, socket directory bind-mounted, host network
# (its TCP and metrics listen on loopback: port 0, read from the ready
# file), the host's /dev/shm (the sim source's backing, which physpoolctl
# on the host maps by path).
dir=$(mktemp -d /tmp/physpool-image-XXXXXX)
chown 10001:10001 "$dir"
name=physpool-image-test-$$
cleanup() {
  podman rm -f "$name" "$name-ds" > /dev/null 2>&1 || true
  [ -n "${alloc_pid:-}" ] && kill "$alloc_pid" 2> /dev/null
  rm -rf "$dir" /dev/shm/physpool-10001
}
trap cleanup EXIT
# --pid host, as the DaemonSet's hostPID: the fd socket hands a lease's view
# only to a peer whose pid the daemon can see (the quarantine looks for it).
podman run -d --name "$name" --network host --ipc host --pid host -v "$dir:/run/physpool" "$image" \
  --tcp 127.0.0.1:0 --metrics 127.0.0.1:0 --ready-file /run/physpool/ready.json > /dev/null
for _ in $(seq 300); do [ -f "$dir/ready.json" ] && break; sleep 0.1; done
[ -f "$dir/ready.json" ] || { podman logs "$name" >&2; fail "physpoold in the container never got ready"; }
ready=$(cat "$dir/ready.json")
tcp_port=$(sed -E 's/.*"tcp_port":([0-9]+).*/\1/' <<< "$ready")
metrics_port=$(sed -E 's/.*"metrics_port":([0-9]+).*/\1/' <<< "$ready")
echo "container ready: $ready"
grep -q '"unix":"/run/physpool/physpool.sock"' <<< "$ready" \
  || fail "the embedded default's socket is not in /run/physpool: $ready"
[ -S "$dir/physpool.sock" ] || fail "no socket in the bind-mounted directory"

[ "$("$ctl" --endpoint "unix:$dir/physpool.sock" health)" = SERVING ] || fail "health over the socket"
[ "$("$ctl" --endpoint "127.0.0.1:$tcp_port" health)" = SERVING ] || fail "health over TCP"

# An allocation held by physpoolctl, seen in the daemon, released on SIGINT.
"$ctl" --endpoint "unix:$dir/physpool.sock" alloc --bytes 4MiB --alignment 2MiB \
  --max-segments 1 --label image-test --hold > "$dir/alloc.out" 2>&1 &
alloc_pid=$!
for _ in $(seq 100); do grep -q '^lease l-' "$dir/alloc.out" && break; sleep 0.1; done
grep -q '^lease l-' "$dir/alloc.out" || { cat "$dir/alloc.out" >&2; fail "physpoolctl alloc"; }
lease=$(awk '/^lease l-/ {print $2; exit}' "$dir/alloc.out")
"$ctl" --endpoint "unix:$dir/physpool.sock" lease list | grep -q "$lease.*image-test" \
  || fail "lease $lease not listed"
metrics=$(curl -sf "http://127.0.0.1:$metrics_port/metrics") || fail "/metrics not reachable"
grep -q '^physpool_lease_bytes{tenant="default"} 4194304$' <<< "$metrics" \
  || fail "/metrics does not show the 4 MiB lease: $(grep lease_bytes <<< "$metrics")"
grep -q '^physpool_pages{' <<< "$metrics" || fail "/metrics has no physpool_pages"
kill -INT "$alloc_pid"
wait "$alloc_pid" || fail "physpoolctl alloc exited $? on SIGINT"
alloc_pid=
"$ctl" --endpoint "unix:$dir/physpool.sock" lease list | grep -q "$lease" && fail "lease not released"

# SIGTERM: exit 0, promptly (the pod's terminationGracePeriodSeconds is 30).
t0=$(ms)
podman kill --signal TERM "$name" > /dev/null
code=$(podman wait "$name")
stop_ms=$(( $(ms) - t0 ))
stop_s=$(( stop_ms / 1000 )).$(printf %03d $(( stop_ms % 1000 )))
echo "SIGTERM: exit code $code after ${stop_s} s"
[ "$code" = 0 ] || { podman logs "$name" >&2; fail "exit code $code after SIGTERM"; }
(( stop_ms < 10000 )) || fail "SIGTERM took ${stop_s} s (limit 10 s)"
podman logs "$name" 2>&1 | grep -q 'msg=stopped' || fail "no 'stopped' in the daemon's log"
[ -e "$dir/physpool.sock" ] && fail "the socket was left behind"

# The Kubernetes shape, in podman: the daemon as the DaemonSet runs it (the
# base ConfigMap's config, --health-listen, read-only root, uid 0 group
# 10001 with SYS_PTRACE and DAC_READ_SEARCH only (the quarantine's /proc
# scan), the socket directory and the store as host directories prepared
# as the init container does), and the example tenant
# (deploy/k8s/examples/tenant) in another container that shares only the
# socket directory: physpool-fill-region with the demo token.
k8s=$dir/k8s
mkdir -p "$k8s/run" "$k8s/store"
chown 0:10001 "$k8s/run" && chmod 0750 "$k8s/run"
chown 0:0 "$k8s/store" && chmod 0700 "$k8s/store"
podman run -d --name "$name-ds" --network none --pid host --read-only --cap-drop ALL \
  --user 0:10001 --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH \
  --security-opt no-new-privileges \
  -v "$src/deploy/k8s/base/physpoold.yaml:/etc/physpool/physpoold.yaml:ro" \
  -v "$k8s/run:/run/physpool" -v "$k8s/store:/var/lib/physpool" "$image" \
  --config=/etc/physpool/physpoold.yaml --health-listen=0.0.0.0:7601 > /dev/null
for _ in $(seq 300); do [ -S "$k8s/run/physpool.sock" ] && break; sleep 0.1; done
[ -S "$k8s/run/physpool.sock" ] || { podman logs "$name-ds" >&2; fail "the DaemonSet-style daemon never listened"; }
probe=""
for _ in $(seq 50); do
  probe=$(podman exec "$name-ds" /usr/local/bin/physpoolctl --endpoint 127.0.0.1:7601 health 2>&1 || true)
  [ "$probe" = SERVING ] && break
  sleep 0.1
done
[ "$probe" = SERVING ] || fail "the gRPC probe port 7601 says: $probe"
tenant() {
  podman run --rm --network none --read-only --cap-drop ALL --user 10001:10001 \
    -v "$k8s/run:/run/physpool" -e PHYSPOOL_ENDPOINT=unix:/run/physpool/physpool.sock \
    -e PHYSPOOL_TOKEN="$1" --entrypoint /usr/local/bin/physpool-fill-region "$image" 4194304 2>&1
}
token=$(sed -n 's/^  token: //p' "$src/deploy/k8s/examples/tenant/secret-token.yaml")
out=$(tenant "$token") || fail "the example tenant failed: $out"
grep -q "^filled and verified$" <<< "$out" || fail "the example tenant: $out"
echo "example tenant container: $(head -1 <<< "$out"), filled and verified"
out=$(tenant wrong-token) && fail "a wrong token was accepted: $out"
grep -q "code 16" <<< "$out" || fail "a wrong token: want UNAUTHENTICATED (16), got: $out"
podman kill --signal TERM "$name-ds" > /dev/null
[ "$(podman wait "$name-ds")" = 0 ] || { podman logs "$name-ds" >&2; fail "DaemonSet-style daemon exit code"; }
podman rm -f "$name-ds" > /dev/null

echo "image test passed: build ${build_s} s, size $size bytes, SIGTERM ${stop_s} s"
