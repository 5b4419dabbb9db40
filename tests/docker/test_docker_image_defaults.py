"""Each CI image runs its backend's default experiment through the docker runner (issue 30
item 5): nothing but the model named, every other experiment setting at its default.

A study of ``backend: [pytorch, vllm]`` under ``--runner docker`` on a CPU host once failed its
vLLM run in phase load with ``InductorError: InvalidCxxCompiler: No working C++ compiler found``:
vLLM compiles its model with torch.compile (Inductor writes and builds C++ on the CPU) unless
``enforce_eager``, and the image had no g++. The images now carry a C and a C++ compiler and the
Python headers (``docker/runtime-toolchain.sh``), and this test runs the defaults that needed
them, ``vllm.enforce_eager`` unset included. The model is the local one vLLM's CPU attention
accepts (head size 32; ``conftest.vllm_cpu_model``), the same for both backends.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from llenergymeasure import run_study

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_each_image_runs_the_default_experiment_of_its_backend(
    pytorch_image: str,
    vllm_image: str,
    vllm_cpu_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a model cache of its own: its compile cache starts empty, so vLLM compiles now (a compiled
    # graph found in a cache would load without the compiler this test is about)
    user = tmp_path / "user-config.yaml"
    user.write_text(  # where things go and which image runs each backend: no measurement setting
        textwrap.dedent(
            f"""\
            output:
              results_dir: {tmp_path / "results"}
              model_cache_dir: {tmp_path / "model-cache"}
            runners:
              pytorch: docker:{pytorch_image}
              vllm: docker:{vllm_image}
            """
        )
    )
    monkeypatch.setenv("LLEM_CONFIG", str(user))
    study = {
        "name": "image-defaults",
        "base": {"model": str(vllm_cpu_model)},  # the one setting without a default
        "sweep": {"backend": ["pytorch", "vllm"]},
        "execution": {"n_cycles": 1, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
    }
    result = run_study(study)
    assert not result.failures, [f"{f.phase}: {f.message}" for f in result.failures]
    by_backend = {r.config.backend: r for r in result.runs}
    assert set(by_backend) == {"pytorch", "vllm"}
    for backend, image in (("pytorch", pytorch_image), ("vllm", vllm_image)):
        run = by_backend[backend]
        assert run.environment.container_image == image
        defaults = type(run.config)(model=str(vllm_cpu_model), backend=backend)
        assert run.config == defaults  # every setting at its default, the engine's section too
        assert run.output_tokens == defaults.n * defaults.max_output_tokens
    vllm_section = by_backend["vllm"].config.backend_section()
    assert vllm_section is None or not getattr(vllm_section, "enforce_eager", False)
    compiled = by_backend["vllm"].compile
    assert compiled is not None and compiled.cache == "miss"  # Inductor compiled in the container
