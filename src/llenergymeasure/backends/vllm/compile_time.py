"""How long vLLM compiled during its start, read from the engine's own timers (issue 26).

vLLM compiles inside ``LLM(...)`` (torch.compile, and on CUDA the CUDA-graph capture after it).
Its timer is ``compilation_config.compilation_time``: ``monitor_torch_compile`` adds to it (and
logs "torch.compile took X s in total") in its piecewise ``VLLM_COMPILE`` mode, the CUDA default.
The vLLM-CPU platform compiles in ``DYNAMO_TRACE_ONCE`` mode, which that timer skips; torch's own
Dynamo total (``torch._dynamo.utils.compilation_time_metrics``, backend compile included) covers
both. vLLM 0.32 logs its CUDA-graph capture time ("Graph capturing finished in X secs", whole
seconds) and keeps no record of it, so it is not separated here.

Where the timers live decides how they are read:

- engine core in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, as vLLM's own startup
  benchmark runs it to read them): directly;
- engine core in its own process: asked of the workers (``workers.ask_workers``), which works
  with the in-process (``uni``) executor (CUDA, one GPU) and, for the multi-process (``mp``)
  executor (every vLLM-CPU run, tensor/pipeline parallel on CUDA), only with
  ``VLLM_ALLOW_INSECURE_SERIALIZATION=1``: otherwise the time is null, with that reason.
"""

from __future__ import annotations

import sys
from typing import Any

from llenergymeasure.backends.vllm.workers import ask_workers

#: torch's timers of Dynamo's two entry points, backend compile included: the JIT path
#: (``torch.compile``) and the ahead-of-time path vLLM takes on the CPU (``num_aot_compiles``);
#: on torch 2.13 neither runs inside the other (an AOT compile of vLLM-CPU recorded only the second)
_DYNAMO_TIMERS = ("_compile.compile_inner", "fullgraph_capture")


def dynamo_compile_s() -> float:
    """torch's Dynamo compile total in this process so far (0 before torch compiled anything)."""
    dynamo = sys.modules.get("torch._dynamo.utils")
    metrics = getattr(dynamo, "compilation_time_metrics", None) or {}
    return float(sum(sum(metrics.get(name, ())) for name in _DYNAMO_TIMERS))


def _mode_name(compilation_config: Any) -> str:
    mode = getattr(compilation_config, "mode", None)
    return str(getattr(mode, "name", mode))


def worker_compile_times(worker: Any) -> dict[str, Any]:
    """In a vLLM worker (module level: cloudpickle sends a reference): its compile timers."""
    config = getattr(worker, "compilation_config", None)
    if config is None:
        config = getattr(getattr(worker, "vllm_config", None), "compilation_config", None)
    return {
        "vllm_s": float(getattr(config, "compilation_time", 0.0) or 0.0),
        "torch_s": dynamo_compile_s(),
        "mode": _mode_name(config),
    }


def compile_time_from(times: list[dict[str, Any]]) -> tuple[float | None, str]:
    """(seconds, where the number came from) from ``worker_compile_times`` of every worker: the
    slowest worker (they compile in parallel), vLLM's own timer where it ran, else torch's."""
    vllm_s = max((float(t.get("vllm_s") or 0.0) for t in times), default=0.0)
    if vllm_s > 0:
        return vllm_s, "vLLM's compilation_config.compilation_time (slowest worker)"
    torch_s = max((float(t.get("torch_s") or 0.0) for t in times), default=0.0)
    modes = ", ".join(sorted({str(t.get("mode") or "?") for t in times})) or "?"
    if torch_s > 0:
        return torch_s, (
            f"torch._dynamo's compile time in the engine's worker (compilation mode {modes}, "
            "which vLLM's own timer does not cover)"
        )
    return None, f"vLLM compiled nothing during its start (compilation mode {modes})"


def engine_compile_time(llm: Any, dynamo_before_s: float) -> tuple[float | None, str]:
    """The compile time of the engine ``llm`` (a started ``vllm.LLM``), or None with the reason.

    ``dynamo_before_s``: ``dynamo_compile_s()`` just before ``LLM(...)``, so that only the
    engine's compile counts when it ran in this process.
    """
    vllm_config = llm.llm_engine.vllm_config
    compilation = vllm_config.compilation_config
    here: dict[str, Any] = {
        "vllm_s": float(getattr(compilation, "compilation_time", 0.0) or 0.0),
        "torch_s": dynamo_compile_s() - dynamo_before_s,
        "mode": _mode_name(compilation),
    }
    if here["vllm_s"] > 0 or here["torch_s"] > 0:  # the engine ran in this process
        return compile_time_from([here])
    times, problem = ask_workers(llm, worker_compile_times)
    if times and all(isinstance(t, dict) for t in times):
        return compile_time_from(times)
    return None, (
        "vLLM's workers did not report their compile time (with "
        "VLLM_ENABLE_V1_MULTIPROCESSING=0 the engine runs in this process, where the timers "
        f"are read directly): {problem or f'unexpected answer {str(times)[:200]}'}"
    )
