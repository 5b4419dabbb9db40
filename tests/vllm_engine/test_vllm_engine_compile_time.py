"""vLLM's compile time in the result (issue 26): a compiled vLLM-CPU run records it, one engine start.

vLLM compiles inside ``LLM(...)``. On the CPU platform it compiles in ``DYNAMO_TRACE_ONCE`` mode
(its own ``compilation_time`` stays 0) and the number is torch's Dynamo total; the engine runs in
the harness's process here (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), the one vLLM-CPU setting where
the timers can be read without ``VLLM_ALLOW_INSECURE_SERIALIZATION`` (the other routes, and the
null with its reason: tests/backends/test_vllm_compile_time.py). The eager case
(``enforce_eager: true``: null with a reason) is checked by ``test_vllm_integration``'s
every-field test on the engine it already starts.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from llenergymeasure import ExperimentConfig
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_a_compiled_vllm_cpu_run_records_its_compile_time(
    vllm_python: Path, tmp_path: Path, shared_model_cache: Path
) -> None:
    config = ExperimentConfig.from_dict(
        {
            "model": "synthetic/tiny-llama",
            "backend": "vllm",
            "precision": "fp32",
            "n": 2,
            "batch_size": 2,
            "dataset": {"source": "synthetic", "input_tokens": 8},
            "max_input_tokens": 32,
            "max_output_tokens": 4,
            "warmup": {"mode": "fixed", "runs": 1},
            "baseline": {"enabled": False},
            "vllm": {"enforce_eager": False, "max_model_len": 128},
            # a cold compile: a hit loads vLLM's AOT-compiled artefacts and compiles nothing
            "measurement": {"compile_cache": "refresh"},
        }
    )
    request = HarnessRequest(
        config=config,
        settings=HarnessSettings(energy_backend="none", model_cache_dir=str(shared_model_cache)),
    )
    request.write(tmp_path / "request.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR", "VLLM_"))}
    # vLLM-CPU always runs its workers in their own process (the mp executor), which vLLM does
    # not let a function reach without VLLM_ALLOW_INSECURE_SERIALIZATION; with the engine in
    # the harness's process (as vLLM's startup benchmark runs it) the timers are read directly
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    out = tmp_path / "run"
    argv = [str(vllm_python), "-m", "llenergymeasure.harness", "--config"]
    argv += [str(tmp_path / "request.json"), "--output", str(out)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    result = json.loads((out / "result.json").read_text())
    record = result["compile"]
    assert record["duration_s"] is not None and record["duration_s"] > 0, record
    assert record["cache"] == "miss", record
    assert "compile time: torch._dynamo's compile time" in record["reason"], record
    assert "DYNAMO_TRACE_ONCE" in record["reason"], record
    # the compile ran inside the load: it cannot be longer than the load that contains it
    assert record["duration_s"] < result["load"]["duration_s"], (record, result["load"])
