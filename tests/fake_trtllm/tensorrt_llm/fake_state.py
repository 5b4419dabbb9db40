"""Test-only bookkeeping of the fake (not part of the real ``tensorrt_llm``)."""

from __future__ import annotations

from typing import Any

#: how many GPUs the fake pretends this process can see (the real LLM refuses tp*pp above it)
device_count: int = 8
#: one dict per event: {"event": "init"|"build"|"load_engine"|"generate"|"save"|"shutdown", ...}
events: list[dict[str, Any]] = []
#: fake runtime GPU memory use reported in iteration stats, bytes per built/loaded engine
gpu_mem_usage_bytes: int = 3 * 1024**3


def reset() -> None:
    """Forget everything recorded so far (tests call it between cases)."""
    global device_count, gpu_mem_usage_bytes
    events.clear()
    device_count = 8
    gpu_mem_usage_bytes = 3 * 1024**3


def count(event: str) -> int:
    return sum(1 for e in events if e["event"] == event)


def last(event: str) -> dict[str, Any]:
    for e in reversed(events):
        if e["event"] == event:
            return e
    raise LookupError(f"no {event!r} event recorded")
