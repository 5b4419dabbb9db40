"""The pieces the backends share: static batching and per-request timing, with hand-computed values."""

from __future__ import annotations

import datetime as dt

import pytest

from llenergymeasure.backends.base import Prompt
from llenergymeasure.backends.batching import chunks, count_until_eos, left_padded, shared_budget
from llenergymeasure.backends.request_timing import (
    record_from_step_offsets,
    seconds,
    span_timings,
)


def _p(ids: list[int], budget: int = 4) -> Prompt:
    return Prompt(token_ids=ids, max_new_tokens=budget)


def test_chunks_keep_order_and_the_short_tail() -> None:
    prompts = [_p([i]) for i in range(5)]
    got = [[p.token_ids[0] for p in c] for c in chunks(prompts, 2)]
    assert got == [[0, 1], [2, 3], [4]]


def test_a_static_batch_needs_one_budget() -> None:
    assert shared_budget([_p([1], 8), _p([2], 8)]) == 8
    with pytest.raises(ValueError, match=r"share max_new_tokens.*\[4, 8\]"):
        shared_budget([_p([1], 8), _p([2], 4)])


def test_left_padding_and_mask() -> None:
    torch = pytest.importorskip("torch")
    ids, mask, width = left_padded(torch, [_p([5, 6, 7]), _p([9])], pad_id=0)
    assert width == 3
    assert ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_eos_counts_itself_and_never_the_padding_after_it() -> None:
    assert count_until_eos([4, 2, 0, 0], eos_ids={2}) == 2
    assert count_until_eos([4, 5, 6], eos_ids={2}) == 3
    assert count_until_eos([3, 9], eos_ids={3, 9}) == 1


def test_step_offsets_become_ttft_itl_and_latency() -> None:
    # steps end 0.10, 0.15, 0.30, 0.40 s after the start; this request generated 3 tokens
    record = record_from_step_offsets(7, 3, [0.10, 0.15, 0.30, 0.40])
    assert record.input_tokens == 7 and record.output_tokens == 3
    assert record.ttft_s == 0.10
    assert record.itl_s == pytest.approx([0.05, 0.15])
    assert record.latency_s == 0.30


def test_span_timings_from_timedeltas_or_seconds() -> None:
    ttft, latency = span_timings(
        dt.timedelta(seconds=10), dt.timedelta(seconds=10.25), dt.timedelta(seconds=11.5)
    )
    assert ttft == pytest.approx(0.25) and latency == pytest.approx(1.5)
    assert span_timings(2.0, 2.5, 4.0) == (0.5, 2.0)
    assert span_timings(2.0, 0.0, 4.0) == (None, None), "a first-token time of 0: not recorded"
    assert span_timings(None, 2.5, 4.0) == (None, None)
    assert seconds(dt.timedelta(milliseconds=1500)) == 1.5 and seconds(None) is None
