#!/usr/bin/env bash
# CI's Docker check (called by .ci/run, which installs docker.io and debootstrap): starts a
# private dockerd, makes the base image offline (no image registry is reachable: debootstrap of
# Debian bookworm from the Debian mirror with Debian's python3 and python3-venv, passed as the
# Dockerfile's BASE), then runs tests/deploy/docker-smoke.sh against it. Everything it starts it
# stops, by pid; its files are in one temporary directory, removed at the end.
#
# The daemon runs without iptables, without a bridge network and on the vfs storage driver (no
# overlayfs needed): builds use --network host (the build stage reaches PyPI), the container runs
# with --network none and is checked from inside.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=$(mktemp -d /tmp/incident-bridge-docker-ci.XXXXXX)
export DOCKER_HOST=unix://$WORK/docker.sock
DOCKERD_PID=

stop() {
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    kill "$DOCKERD_PID"
    for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null || true
  fi
  # dockerd leaves its default network namespace mounted under its exec root.
  awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l || true
  rm -rf "$WORK" 2>/dev/null || true
}
trap stop EXIT

for bin in dockerd docker debootstrap; do
  command -v "$bin" >/dev/null || { echo "missing: $bin (Debian: docker.io, debootstrap)" >&2; exit 1; }
done

dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
  --data-root "$WORK/root" --exec-root "$WORK/exec" --pidfile "$WORK/dockerd.pid" \
  -H "$DOCKER_HOST" >"$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
docker info >/dev/null 2>&1 || { tail -n 30 "$WORK/dockerd.log" >&2; echo "dockerd did not start" >&2; exit 1; }
docker version --format 'docker {{.Server.Version}}'

echo "== base image: debootstrap $SUITE with python3, python3-venv"
debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$WORK/rootfs" "$MIRROR" \
  >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }
rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
# The build stage's pip trusts what this machine's pip trusts (the same CA bundle).
cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$WORK/rootfs/etc/pip.conf"
tar -C "$WORK/rootfs" -c . | docker import - local/debian-python3:"$SUITE" >/dev/null
rm -rf "$WORK/rootfs"

BASE=local/debian-python3:$SUITE IMAGE=incident-bridge:ci bash tests/deploy/docker-smoke.sh
