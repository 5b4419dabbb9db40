# llenergymeasure:sglang — llem on SGLang's own release image, for `backend: openai` with
# `openai.launch.engine: sglang` under the docker runner: the harness runs in this container and
# launches the engine's server (`python -m sglang.launch_server`) beside it, on the experiment's GPUs.
#
# NOT built by `make images` (CI time; no llem backend needs it). Build it when you measure SGLang:
#   docker/build-image.sh sglang                 # llenergymeasure:sglang on the pinned base below
#   docker/build-image.sh sglang --base IMAGE --tag TAG     # another release
# then name it in the experiment: `openai: {launch: {engine: sglang, image: llenergymeasure:sglang}}`.
# The base is the default image llem names for this engine (backends/openai/images.py,
# ENGINE_RELEASE_IMAGES); its engine is kept exactly as shipped (docker/install-llem.sh pins it).
# Not built in this project's CI (no registry, no GPU): docs/backends/openai.md says so.
ARG BASE_IMAGE=lmsysorg/sglang:v0.5.20-cu130
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
# The pyproject extras installed on top of the base image's engine ("" = core only): llem has no
# backend of this engine (it is reached over HTTP: backend openai), so Zeus only, for
# `energy_backend: zeus` (and `auto`, which prefers Zeus) in the container.
ARG LLEM_EXTRA=zeus
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

LABEL org.opencontainers.image.title="llenergymeasure:sglang" \
      org.llenergymeasure.backend="openai" \
      org.llenergymeasure.engine="sglang"
WORKDIR /work
# No entrypoint: `docker run IMAGE llem run experiment.yaml`; the docker runner passes the harness.
ENTRYPOINT []
CMD ["llem", "--help"]
