"""Running a function of this package in vLLM's workers (``LLM.collective_rpc``).

vLLM V1 runs its engine core in a process of its own and refuses to send a function object there
unless ``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` ("Object of type <class 'function'> is not
serializable"). Cloudpickled bytes are plain data on that hop, and the in-process (``uni``)
executor, vLLM's default for one CUDA GPU, runs bytes as the function they pickle
(``vllm.v1.serial_utils.run_method``). The multi-process (``mp``) executor, every vLLM-CPU run and
tensor/pipeline parallel on CUDA, pickles bytes once more, so its workers get bytes back and
fail: there only the function object can go, which needs the variable. The function must be
defined at module level (cloudpickle sends a reference to it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def executor_of(llm: Any) -> str | None:
    """vLLM's executor backend of a started ``vllm.LLM`` (``uni``, ``mp``, ``ray``...)."""
    parallel = getattr(llm.llm_engine.vllm_config, "parallel_config", None)
    value = getattr(parallel, "distributed_executor_backend", None)
    return value if isinstance(value, str) or value is None else str(value)


def ask_workers(llm: Any, fn: Callable[[Any], Any]) -> tuple[list[Any] | None, str | None]:
    """``fn(worker)`` in every worker of ``llm``: (the answers, None), or (None, why not)."""
    methods: list[Any] = [fn]
    if executor_of(llm) == "uni":
        import cloudpickle  # a dependency of vLLM

        methods.insert(0, cloudpickle.dumps(fn))
    errors = []
    for method in methods:
        try:
            answers = llm.collective_rpc(method)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            continue
        if isinstance(answers, list):
            return answers, None
        errors.append(f"unexpected answer {str(answers)[:200]}")
    return None, (
        f"vLLM's {executor_of(llm)} executor did not run the function in its workers (vLLM "
        "sends a function there only with VLLM_ALLOW_INSECURE_SERIALIZATION=1): "
        + "; ".join(errors)
    )
