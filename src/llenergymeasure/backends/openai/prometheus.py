"""The engine's own state from its Prometheus ``/metrics`` page (vLLM and SGLang names).

``parse_text`` reads the Prometheus text exposition format (``# HELP``/``# TYPE`` comments, one
``name{label="value",...} number [timestamp]`` sample a line); ``engine_sample`` picks the few
figures the endpoint backend records, under whichever engine's names the page uses:

==========================  =====================================  =================================
figure                      vLLM (V1; older names after the ``/``)  SGLang
==========================  =====================================  =================================
running requests            ``vllm:num_requests_running``           ``sglang:num_running_reqs``
waiting requests            ``vllm:num_requests_waiting``           ``sglang:num_queue_reqs``
KV-cache use (0-1)          ``vllm:kv_cache_usage_perc`` /          ``sglang:token_usage``
                            ``vllm:gpu_cache_usage_perc``
preemptions (counter)       ``vllm:num_preemptions_total``          ``sglang:num_retracted_reqs``
prompt tokens (counter)     ``vllm:prompt_tokens_total``            ``sglang:prompt_tokens_total``
generation tokens (counter) ``vllm:generation_tokens_total``        ``sglang:generation_tokens_total``
==========================  =====================================  =================================

A page can hold several series of one name (one per engine or data-parallel rank, told apart by
labels): counts are summed over them, the KV-cache fraction is their mean. vLLM's
``*_perc`` gauges are fractions (0-1) despite the name. SGLang counts retractions (its word for
preemption) in a gauge of the current total; it is read as the counter it behaves as.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# figure -> candidate names, first found wins, per dialect
_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "vllm": {
        "running": ("vllm:num_requests_running",),
        "waiting": ("vllm:num_requests_waiting",),
        "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        "preemptions": ("vllm:num_preemptions_total", "vllm:num_preemptions"),
        "prompt_tokens": ("vllm:prompt_tokens_total", "vllm:prompt_tokens"),
        "generation_tokens": ("vllm:generation_tokens_total", "vllm:generation_tokens"),
    },
    "sglang": {
        "running": ("sglang:num_running_reqs",),
        "waiting": ("sglang:num_queue_reqs",),
        "kv_cache_usage": ("sglang:token_usage",),
        "preemptions": ("sglang:num_retracted_reqs", "sglang:num_retracted_requests_total"),
        "prompt_tokens": ("sglang:prompt_tokens_total", "sglang:prompt_tokens"),
        "generation_tokens": ("sglang:generation_tokens_total", "sglang:generation_tokens"),
    },
}
_MEAN_FIGURES = {"kv_cache_usage"}

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>.*)\})?"
    r"\s+(?P<value>\S+)(?:\s+(?P<ts>-?\d+))?\s*$"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


class MetricsFormatError(ValueError):
    """A line of a ``/metrics`` page that is not Prometheus text format."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class EngineSample:
    """One scrape of the engine's state (``None``: the page does not have that figure)."""

    dialect: str
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    preemptions: float | None = None
    prompt_tokens: float | None = None
    generation_tokens: float | None = None


def _unescape(value: str) -> str:
    return value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def _number(text: str, line_no: int) -> float:
    lowered = text.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    if lowered == "nan":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise MetricsFormatError(f"line {line_no}: {text!r} is not a number") from None


def parse_text(text: str) -> list[Sample]:
    """Every sample of a Prometheus text-format page, in page order."""
    samples = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise MetricsFormatError(f"line {line_no}: not a Prometheus sample: {line[:120]!r}")
        labels: list[tuple[str, str]] = []
        rest = m.group("labels") or ""
        pos = 0
        while pos < len(rest):
            lm = _LABEL.match(rest, pos)
            if lm is None:
                raise MetricsFormatError(f"line {line_no}: bad labels {rest[pos : pos + 80]!r}")
            labels.append((lm.group(1), _unescape(lm.group(2))))
            pos = lm.end()
        samples.append(Sample(m.group("name"), tuple(labels), _number(m.group("value"), line_no)))
    return samples


def dialect_of(samples: list[Sample]) -> str | None:
    """``vllm`` or ``sglang`` from the names on the page; None when neither engine's are there."""
    names = {s.name for s in samples}
    for dialect, figures in _NAMES.items():
        if any(n in names for n in figures["running"]):
            return dialect
    return None


def engine_sample(text: str) -> EngineSample | None:
    """The engine's figures from one ``/metrics`` page; None when it is neither vLLM's nor SGLang's."""
    samples = parse_text(text)
    dialect = dialect_of(samples)
    if dialect is None:
        return None
    by_name: dict[str, list[float]] = {}
    for s in samples:
        by_name.setdefault(s.name, []).append(s.value)
    figures: dict[str, float | None] = {}
    for figure, candidates in _NAMES[dialect].items():
        figures[figure] = None
        for name in candidates:
            values = by_name.get(name)
            if values:
                total = math.fsum(values)
                figures[figure] = total / len(values) if figure in _MEAN_FIGURES else total
                break
    return EngineSample(dialect=dialect, **figures)
