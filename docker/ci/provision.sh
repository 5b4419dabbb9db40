#!/usr/bin/env bash
# Everything CI needs for the Docker tests, idempotent (each step is skipped when already done):
#   1. docker.io, debootstrap and docker-compose from Debian, if missing;
#   2. a Docker daemon without its default bridge or iptables rules (containers use the host's
#      network; nothing here may open other network paths), if none answers;
#   3. the local base image and the CI images (`make images-ci`).
# Each step prints its duration; the whole is bounded by what the image builds need.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DOCKERD_LOG="${LLEM_DOCKERD_LOG:-/var/log/llem-dockerd.log}"
DOCKERD_WAIT_S="${LLEM_DOCKERD_WAIT_S:-60}"
t0=$(date +%s)
step() { echo "[provision] $(( $(date +%s) - t0 )) s: $*"; }

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    command -v sudo >/dev/null || { echo "provision.sh needs root (or sudo)" >&2; exit 1; }
    SUDO="sudo"
fi

# 1. Packages.
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if [[ ${#missing[@]} -gt 0 ]]; then
    step "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The daemon.
if docker info >/dev/null 2>&1; then
    step "a Docker daemon is already running"
else
    step "starting dockerd (no bridge, no iptables; log: $DOCKERD_LOG)"
    $SUDO sh -c "nohup dockerd --bridge=none --iptables=false >>'$DOCKERD_LOG' 2>&1 &"
    deadline=$(( $(date +%s) + DOCKERD_WAIT_S ))
    until docker info >/dev/null 2>&1; do
        if [[ $(date +%s) -ge $deadline ]]; then
            echo "dockerd did not answer within ${DOCKERD_WAIT_S} s; last lines of $DOCKERD_LOG:" >&2
            $SUDO tail -n 30 "$DOCKERD_LOG" >&2 || true
            exit 1
        fi
        sleep 1
    done
    step "dockerd is up"
fi

# 3. Images.
step "building the CI images"
make -C "$ROOT" images-ci
step "done"
docker images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E 'llenergymeasure|llem-ci' || true
