#!/usr/bin/env bash
# Build one backend image from the Dockerfiles in this directory, sending Docker only what the
# image needs (pyproject.toml, README.md, src/, docker/*.Dockerfile, docker/*.sh) so a large .venv or results/ directory in
# the checkout never travels to the daemon.
#
# Usage: docker/build-image.sh BACKEND [options]      BACKEND: pytorch | vllm | trtllm | sglang | tgi
#   (sglang, tgi: llem on that engine's release image, for backend openai's launch; not in `make images`)
#   --tag TAG            image tag (default llenergymeasure:BACKEND)
#   --base IMAGE         BASE_IMAGE build arg (default: the Dockerfile's pinned production image)
#   --engine-version V   another engine release, side by side with the default image: vllm builds
#                        on vllm/vllm-openai:vV as llenergymeasure:vllm-V, trtllm on
#                        nvcr.io/nvidia/tensorrt-llm/release:V as llenergymeasure:trtllm-V
#                        (pytorch: give --base and --tag); --base and --tag still win
#   --extra NAMES        pyproject extras to install, comma separated ("" for the core only)
#   --wheels DIR         local wheels made available to pip inside the build (e.g. a CPU torch)
#   --pre-install SPECS  requirements installed before the package (quoted, space separated)
#   --post-uninstall PKGS  distributions removed after it
#   --network MODE       build network (default host: the container shares the host's network)
#   --dry-run            print the base image, the tag and the docker build command; build nothing
#   Anything after `--` goes to `docker build` unchanged.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
[[ $# -ge 1 ]] || usage
BACKEND="$1"; shift
case "$BACKEND" in
    pytorch|vllm|trtllm|sglang|tgi) ;;
    -h|--help) usage 0 ;;
    *) echo "unknown backend '$BACKEND'; expected pytorch, vllm, trtllm, sglang or tgi" >&2; exit 2 ;;
esac

TAG=""
BASE=""
ENGINE_VERSION=""
DRY_RUN=0
NETWORK=host
WHEELS=""
ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag) TAG="$2"; shift 2 ;;
        --base) BASE="$2"; shift 2 ;;
        --engine-version) ENGINE_VERSION="${2#v}"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --extra) ARGS+=(--build-arg "LLEM_EXTRA=$2"); shift 2 ;;
        --wheels) WHEELS="$2"; shift 2 ;;
        --pre-install) ARGS+=(--build-arg "LLEM_PRE_INSTALL=$2"); shift 2 ;;
        --post-uninstall) ARGS+=(--build-arg "LLEM_POST_UNINSTALL=$2"); shift 2 ;;
        --network) NETWORK="$2"; shift 2 ;;
        --) shift; ARGS+=("$@"); break ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

if [[ -n "$ENGINE_VERSION" ]]; then
    [[ "$ENGINE_VERSION" =~ ^[0-9][0-9A-Za-z.+-]*$ ]] || {
        echo "--engine-version: '$ENGINE_VERSION' is not a release number such as 0.11.0" >&2
        exit 2
    }
    case "$BACKEND" in
        vllm) default_base="vllm/vllm-openai:v$ENGINE_VERSION" ;;
        trtllm) default_base="nvcr.io/nvidia/tensorrt-llm/release:$ENGINE_VERSION" ;;
        *) default_base="" ;;
    esac
    if [[ -z "$default_base" && -z "$BASE" ]]; then
        echo "--engine-version: the $BACKEND base image's tag also names CUDA (or is not only a" \
            "release number); give --base IMAGE (e.g. the Dockerfile's ARG BASE_IMAGE) with --tag" >&2
        exit 2
    fi
    BASE="${BASE:-$default_base}"
    TAG="${TAG:-llenergymeasure:$BACKEND-$ENGINE_VERSION}"
    ARGS+=(--label "org.llenergymeasure.engine-version=$ENGINE_VERSION")
fi
TAG="${TAG:-llenergymeasure:$BACKEND}"
if [[ -n "$BASE" ]]; then
    ARGS+=(--build-arg "BASE_IMAGE=$BASE")
fi

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if [[ "$DRY_RUN" == "1" ]]; then
    pinned="$(sed -n 's/^ARG BASE_IMAGE=//p' "docker/$BACKEND.Dockerfile")"
    echo "tag: $TAG"
    echo "base: ${BASE:-$pinned}"
    echo "docker build --network $NETWORK -f docker/$BACKEND.Dockerfile -t $TAG" \
        ${ARGS[@]+"${ARGS[@]}"} "-"
    exit 0
fi
command -v docker >/dev/null || { echo "the docker client is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || {
    echo "cannot reach a Docker daemon; start one (e.g. 'sudo systemctl start docker')" >&2
    exit 1
}

# Local wheels enter the context as docker/wheels/ (the Dockerfiles copy docker/wheel[s]).
TAR_OPTS=()
TAR_WHEELS=()
if [[ -n "$WHEELS" ]]; then
    [[ -d "$WHEELS" ]] || { echo "--wheels: $WHEELS is not a directory" >&2; exit 2; }
    WHEELS="$(cd "$WHEELS" && pwd)"
    TAR_OPTS=(--transform "s,^${WHEELS#/},docker/wheels,")
    TAR_WHEELS=(-C / "${WHEELS#/}")
fi

VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' src/llenergymeasure/_version.py)"
start=$(date +%s)
echo "building $TAG from docker/$BACKEND.Dockerfile (llenergymeasure $VERSION, network $NETWORK)"
# The context is a tar stream; -C / lets the wheels directory live anywhere on the host.
tar -c --exclude='__pycache__' --exclude='*.pyc' \
        ${TAR_OPTS[@]+"${TAR_OPTS[@]}"} pyproject.toml README.md src docker/*.Dockerfile docker/*.sh \
        ${TAR_WHEELS[@]+"${TAR_WHEELS[@]}"} \
    | docker build --network "$NETWORK" -f "docker/$BACKEND.Dockerfile" -t "$TAG" \
        --label "org.llenergymeasure.version=$VERSION" \
        ${ARGS[@]+"${ARGS[@]}"} -
echo "built $TAG in $(( $(date +%s) - start )) s"
