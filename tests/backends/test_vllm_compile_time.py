"""Reading vLLM's compile time (backends/vllm/compile_time.py) by each route, with a stand-in for
a started ``vllm.LLM`` (the real engine: tests/vllm_engine/test_vllm_engine_compile_time.py), and the
harness's compile record of a backend that compiled inside its load."""

from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import Any

import pytest

from llenergymeasure.backends.vllm import compile_time as ct


class _Worker:
    def __init__(self, seconds: float, mode: str) -> None:
        self.compilation_config = SimpleNamespace(
            compilation_time=seconds, mode=SimpleNamespace(name=mode)
        )


class _LLM:
    """What ``engine_compile_time`` touches: the main process's config and ``collective_rpc``,
    which refuses what vLLM's executor would refuse."""

    def __init__(self, executor: str, workers: list[_Worker], insecure: bool = False) -> None:
        config = SimpleNamespace(compilation_time=0.0, mode=SimpleNamespace(name="VLLM_COMPILE"))
        parallel = SimpleNamespace(distributed_executor_backend=executor)
        self.llm_engine = SimpleNamespace(
            vllm_config=SimpleNamespace(compilation_config=config, parallel_config=parallel)
        )
        self.executor, self.workers, self.insecure = executor, workers, insecure
        self.sent: list[Any] = []

    def collective_rpc(self, method: Any) -> list[Any]:
        self.sent.append(method)
        if callable(method) and not self.insecure:  # the engine core's msgpack encoder
            raise TypeError("Object of type <class 'function'> is not serializable")
        if isinstance(method, bytes):
            if self.executor != "uni":  # mp pickles the bytes again: the worker gets bytes back
                raise RuntimeError("Worker failed with error 'the first argument must be callable'")
            method = pickle.loads(method)
        return [method(w) for w in self.workers]


@pytest.fixture
def nothing_compiled_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch._dynamo's compile time in this process is global: a test that compiled anything
    earlier in the session would read as an engine that ran here. Pin it."""
    monkeypatch.setattr(ct, "dynamo_compile_s", lambda: 5.0)


def test_the_uni_executor_is_asked_with_pickled_bytes(nothing_compiled_here: None) -> None:
    llm = _LLM("uni", [_Worker(12.5, "VLLM_COMPILE")])
    seconds, source = ct.engine_compile_time(llm, 5.0)
    assert seconds == 12.5 and "compilation_config.compilation_time" in source
    assert isinstance(llm.sent[0], bytes) and len(llm.sent) == 1


def test_the_slowest_worker_counts_and_torch_covers_what_vllm_does_not_time() -> None:
    assert ct.compile_time_from([{"vllm_s": 3.0}, {"vllm_s": 5.0}])[0] == 5.0
    seconds, source = ct.compile_time_from([{"vllm_s": 0.0, "torch_s": 7.0, "mode": "X"}])
    assert seconds == 7.0 and "torch._dynamo" in source and "mode X" in source
    seconds, source = ct.compile_time_from([{"vllm_s": 0.0, "torch_s": 0.0, "mode": "NONE"}])
    assert (
        seconds is None
        and source == "vLLM compiled nothing during its start (compilation mode NONE)"
    )


def test_the_mp_executor_without_insecure_serialization_gives_null_with_the_reason(
    nothing_compiled_here: None,
) -> None:
    llm = _LLM("mp", [_Worker(4.0, "VLLM_COMPILE")])
    seconds, reason = ct.engine_compile_time(llm, 5.0)
    assert seconds is None
    assert "mp executor" in reason and "VLLM_ALLOW_INSECURE_SERIALIZATION=1" in reason
    assert "VLLM_ENABLE_V1_MULTIPROCESSING=0" in reason and "not serializable" in reason
    assert not any(isinstance(m, bytes) for m in llm.sent)  # no failing call in the workers
    # with the variable set, vLLM sends the function itself
    allowed = _LLM("mp", [_Worker(4.0, "VLLM_COMPILE"), _Worker(6.0, "VLLM_COMPILE")], True)
    assert ct.engine_compile_time(allowed, 5.0)[0] == 6.0


def test_an_engine_in_this_process_is_read_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    llm = _LLM("uni", [])
    monkeypatch.setattr(ct, "dynamo_compile_s", lambda: 30.0)
    seconds, source = ct.engine_compile_time(llm, 10.0)  # 10 s compiled before the engine
    assert seconds == 20.0 and "torch._dynamo" in source and llm.sent == []


def test_the_harness_records_a_compile_inside_load(tmp_path: Any) -> None:
    from llenergymeasure import ExperimentConfig
    from llenergymeasure.backends.base import Prompt
    from llenergymeasure.harness import compile_cache
    from llenergymeasure.harness.phases import compile_engine
    from tests.helpers import tiny_experiment

    config = ExperimentConfig.from_dict(tiny_experiment())
    fields = compile_cache.key_fields(config, None, [])

    class _Inside:
        def __init__(self, info: dict[str, Any]) -> None:
            self.info = info

        def compile(self, batch: list[Any]) -> dict[str, Any]:
            return self.info

        def synchronize(self) -> None:
            pass

    phases = SimpleNamespace(enter=lambda *a, **k: None)
    prompts = [Prompt([1, 2, 3], 4), Prompt([1, 2, 3], 4)]
    timed = _Inside({"batches": 0, "duration_s": 8.5, "reason": "compile time: vLLM's timer"})
    cache = compile_cache.prepare("on", tmp_path, fields, environ={})
    record = compile_engine(timed, prompts, config, cache, phases)  # type: ignore[arg-type]
    assert record.duration_s == 8.5 and record.reason == "compile time: vLLM's timer"
    untimed = _Inside({"batches": 0, "duration_s": None, "reason": "no timer: why"})
    cache = compile_cache.prepare("on", tmp_path, fields, environ={})
    record = compile_engine(untimed, prompts, config, cache, phases)  # type: ignore[arg-type]
    assert record.duration_s is None and record.reason == "no timer: why"


def _reserved_bytes(worker: Any) -> int:
    return 1000 if worker.compilation_config.compilation_time else 24


def test_peak_memory_reaches_the_workers_of_a_uni_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same route serves the peak-memory read, which sent a bare function (refused by vLLM
    without VLLM_ALLOW_INSECURE_SERIALIZATION, so the CUDA figure was always None)."""
    from llenergymeasure import ExperimentConfig
    from llenergymeasure.backends.vllm import backend as vllm_backend
    from tests.helpers import tiny_experiment

    monkeypatch.setattr(vllm_backend, "_worker_peak_memory_bytes", _reserved_bytes)
    backend = vllm_backend.VLLMBackend(
        ExperimentConfig.from_dict(tiny_experiment(backend="vllm")), "/nonexistent"
    )
    llm = _LLM("uni", [_Worker(1.0, "VLLM_COMPILE"), _Worker(0.0, "VLLM_COMPILE")])
    backend._llm, backend._cuda = llm, True
    assert backend.peak_memory_bytes() == 1024
    assert isinstance(llm.sent[0], bytes)
    backend._llm = _LLM("mp", [_Worker(1.0, "VLLM_COMPILE")])
    assert backend.peak_memory_bytes() is None  # refused: a warning, no figure
