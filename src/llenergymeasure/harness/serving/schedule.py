"""Arrival times and per-request prompts of a serving experiment (all decided before the window).

Open loop: ``arrival_offsets`` gives every request's send time, in seconds from the start of the
window, from a seeded generator:

- ``poisson``: exponential gaps of mean ``1 / rate_rps``;
- ``constant``: gaps of exactly ``1 / rate_rps``;
- ``burst``: ``burst_size`` requests at once, bursts ``burst_size / rate_rps`` apart (same mean);
- ``trace``: the times in ``trace_file`` (shifted to start at 0), rescaled so that their mean rate
  is ``rate_rps`` when that is given.

``n_requests`` caps the count and ``duration_s`` the last send time. Closed loop has no schedule:
the driver sends the next request when one finishes (``duration_s`` / ``n_requests`` bound it).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from llenergymeasure.backends.base import Prompt
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.workload import LoadConfig
from llenergymeasure.errors import ConfigError

#: a schedule without ``n_requests`` is bounded by ``duration_s``; refuse absurd lengths early
MAX_SCHEDULED = 10_000_000


def read_trace(path: str) -> list[float]:
    """Arrival times (s) from a text file, one a line (blank lines and ``#`` comments skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"load.trace_file: cannot read {path!r}: {exc}") from exc
    times: list[float] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            value = float(text.split(",")[0])
        except ValueError as exc:
            raise ConfigError(
                f"load.trace_file {path}:{number}: {text!r} is not a time in seconds"
            ) from exc
        if value < 0 or value != value:
            raise ConfigError(f"load.trace_file {path}:{number}: time {value} must be >= 0")
        times.append(value)
    if not times:
        raise ConfigError(f"load.trace_file {path}: no arrival times in it")
    times.sort()
    return [t - times[0] for t in times]


def arrival_offsets(load: LoadConfig, seed: int) -> list[float]:
    """Send times (s from the window start) of an open-loop load; see the module docstring."""
    if load.closed_loop:
        raise ValueError("a closed-loop load (concurrency) has no arrival schedule")
    if load.search is not None:
        lo, hi = load.search.rate_rps
        raise ConfigError(
            f"load.search (rates {lo:g} to {hi:g} req/s) is a search over runs, run by a study "
            "(`llem run FILE`), which gives each run its load.rate_rps; a single run needs "
            "load.rate_rps instead of load.search"
        )
    cap = load.n_requests or MAX_SCHEDULED
    horizon = load.duration_s if load.duration_s is not None else float("inf")
    rng = random.Random(seed if load.seed is None else load.seed)
    out: list[float] = []
    if load.arrival == "trace":
        assert load.trace_file is not None  # validated by LoadConfig
        times = read_trace(load.trace_file)
        if load.rate_rps is not None and len(times) > 1 and times[-1] > 0:
            own_rate = (len(times) - 1) / times[-1]
            times = [t * own_rate / load.rate_rps for t in times]
        return [t for t in times if t <= horizon][:cap]
    rate = float(load.rate_rps or 0.0)
    t = 0.0
    while len(out) < cap:
        if load.arrival == "burst":
            if t > horizon:
                break
            out.extend([t] * min(load.burst_size, cap - len(out)))
            t += load.burst_size / rate
            continue
        if t > horizon:
            break
        out.append(t)
        t += rng.expovariate(rate) if load.arrival == "poisson" else 1.0 / rate
    return out


def request_prompts(pool: list[Prompt], count: int) -> list[Prompt]:
    """``count`` requests cycling through the prompt pool in order."""
    return [pool[i % len(pool)] for i in range(count)]


def dataset_output_lengths(config: ExperimentConfig, tokenizer: Any) -> list[int]:
    """``load.lengths: dataset``: the token length of every record's reference output.

    Read from the same source and in the same order as the prompts, from ``load.output_field``;
    capped at ``max_output_tokens`` and at least 1.
    """
    from llenergymeasure.datasets.loaders import load_hf_texts, read_jsonl_texts

    assert config.load is not None
    source = config.dataset
    try:
        if source.kind == "jsonl":
            texts = read_jsonl_texts(Path(source.source), config.load.output_field)
        else:
            texts = load_hf_texts(
                source.source,
                field=config.load.output_field,
                split=source.split,
                subset=source.subset,
            )
    except Exception as exc:
        raise ConfigError(
            f"load.lengths: dataset reads each record's load.output_field "
            f"({config.load.output_field!r}) from {source.source}: {exc}"
        ) from exc
    lengths = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        lengths.append(max(1, min(len(ids), config.max_output_tokens)))
    return lengths


def with_output_lengths(prompts: list[Prompt], lengths: list[int]) -> list[Prompt]:
    """The prompts with each ``max_new_tokens`` set from ``lengths`` (cycled like the prompts)."""
    if not lengths:
        return prompts
    return [
        Prompt(token_ids=p.token_ids, max_new_tokens=lengths[i % len(lengths)], text=p.text)
        for i, p in enumerate(prompts)
    ]
