#!/bin/sh
# What the engines compile at run time, in every backend image: a C and a C++ compiler and the
# headers of the Python that runs llem.
#
# Why: torch.compile's Inductor writes C++ kernels on the CPU (and vLLM compiles its model with
# Inductor unless `enforce_eager`), loads them as Python extension modules (Python.h), and on a GPU
# Triton builds its launcher stubs with the C compiler. An image without them builds fine and
# fails the first run that compiles, in phase load ("InductorError: InvalidCxxCompiler: No working
# C++ compiler found"), so this step installs what is missing and then compiles a small C and
# C++ program against Python.h: a missing piece fails the image build, not a user's run.
#
# Production bases (pytorch/pytorch runtime, vllm/vllm-openai, TensorRT-LLM release) are Ubuntu
# and the CI base is Debian: apt-get only where something is missing, so a base that already has
# the compilers is left as it is. LLEM_PYTHON names the interpreter (default python3).
set -eu

PY="${LLEM_PYTHON:-python3}"
PY_INCLUDE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

packages=""
command -v gcc >/dev/null 2>&1 || packages="$packages gcc"
command -v g++ >/dev/null 2>&1 || packages="$packages g++"
if [ ! -f "$PY_INCLUDE/Python.h" ]; then
    case "$PY_INCLUDE" in
    /usr/include/*) packages="$packages python$PY_VERSION-dev" ;;
    *)
        echo "runtime-toolchain: $PY ($PY_VERSION) has no Python.h in $PY_INCLUDE and is not the" \
            "system's Python, so no package can add it; use a base image whose Python ships" \
            "its headers" >&2
        exit 1
        ;;
    esac
fi

if [ -n "$packages" ]; then
    echo "runtime-toolchain: installing$packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086  # a list of packages, split on purpose
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
    rm -rf /var/lib/apt/lists/*
else
    echo "runtime-toolchain: gcc, g++ and Python.h ($PY_VERSION) already in the base image"
fi

# The check: what Inductor and Triton do, in miniature.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '#include <Python.h>\nint main(void) { return Py_IsInitialized(); }\n' >"$work/c.c"
printf '#include <Python.h>\n#include <vector>\nint main() { std::vector<int> v{0}; return v[0]; }\n' \
    >"$work/cxx.cpp"
gcc -I"$PY_INCLUDE" -c "$work/c.c" -o "$work/c.o" || {
    echo "runtime-toolchain: gcc cannot compile against $PY_INCLUDE/Python.h" >&2
    exit 1
}
g++ -std=c++17 -I"$PY_INCLUDE" -c "$work/cxx.cpp" -o "$work/cxx.o" || {
    echo "runtime-toolchain: g++ cannot compile C++17 against $PY_INCLUDE/Python.h" >&2
    exit 1
}
echo "runtime-toolchain: $(gcc --version | head -n 1); C and C++ against Python $PY_VERSION headers: ok"
