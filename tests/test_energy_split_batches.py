"""Prefill/decode split with several batches in a pass (issue 25 item 3), by hand.

Four static batches of 2 s in one 8 s pass: each prefills for 0.5 s at 300 W, then decodes for
1.5 s at 100 W. Prefill is 4 x 150 = 600 J of the series' 1,200 J (share 0.5). The old rule
("pass start -> the pass's largest TTFT") covered only the first batch's 0.5 s (150 J, share
0.125) while dividing by every batch's input tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt, RequestRecord
from llenergymeasure.energy.types import DeviceEnergy, EnergyMeasurement
from llenergymeasure.harness.validity import energy_split, prefill_spans

EPS = 1e-9


def _series(path: Path) -> Path:
    rows = ["t_s,nvml_index,power_w"]
    for b in range(4):
        s = 2.0 * b
        rows += [f"{s},0,300", f"{s + 0.5},0,300", f"{s + 0.5 + EPS},0,100", f"{s + 2 - EPS},0,100"]
    path.write_text("\n".join(rows) + "\n")
    return path


def _measurement(total_j: float) -> EnergyMeasurement:
    return EnergyMeasurement(
        meter="nvml",
        duration_s=8.0,
        sensor_period_s=0.1,
        total_energy_j=total_j,
        devices=[DeviceEnergy(nvml_index=0, energy_j=total_j)],
    )


def _pass(**over: object) -> GenerationOutput:
    records = [RequestRecord(100, 10, ttft_s=0.5, latency_s=2.0) for _ in range(8)]
    return GenerationOutput(requests=records, duration_s=8.0, **over)  # type: ignore[arg-type]


def test_every_batch_prefill_counts(tmp_path: Path) -> None:
    ts = _series(tmp_path / "ts.csv")
    spans = [(0.0, 0.5), (2.0, 2.5), (4.0, 4.5), (6.0, 6.5)]
    out = _pass(prefill_spans_s=spans)
    s = energy_split(ts, _measurement(2400.0), [0.0], [8.0], [out], 800, 80)
    assert s.prefill_share == pytest.approx(0.5, rel=1e-6)
    assert s.prefill_energy_j == pytest.approx(1200.0, rel=1e-6)  # not the old 300 J
    assert s.energy_per_input_token_prefill_j == pytest.approx(1200.0 / 800, rel=1e-6)
    assert s.energy_per_output_token_decode_j == pytest.approx(1200.0 / 80, rel=1e-6)
    assert s.prefill_s == pytest.approx(2.0)
    # the same pass without spans is taken as one batch: only [0, 0.5] (what the old rule did)
    one = energy_split(ts, _measurement(2400.0), [0.0], [8.0], [_pass()], 800, 80)
    assert one.prefill_share == pytest.approx(150.0 / 1200.0, rel=1e-6)


def test_overlapping_prefill_and_decode_give_no_split(tmp_path: Path) -> None:
    ts = _series(tmp_path / "ts.csv")
    out = _pass(prefill_overlap_reason="vLLM ran 8 prompts with max_num_seqs 2")
    s = energy_split(ts, _measurement(2400.0), [0.0], [8.0], [out], 800, 80)
    assert s.prefill_energy_j is None and s.prefill_share is None
    assert "overlapped" in (s.unavailable_reason or "") and "max_num_seqs 2" in (
        s.unavailable_reason or ""
    )
    assert prefill_spans(None)[0] is None and prefill_spans(0.25) == ([(0.0, 0.25)], None)


def test_vllm_says_when_its_prefills_overlap_decodes() -> None:
    from llenergymeasure.backends.vllm.backend import VLLMBackend

    backend = VLLMBackend.__new__(VLLMBackend)
    backend.load_info = LoadInfo(extra={"max_num_seqs": 4, "max_num_batched_tokens": 1000})
    prompts = [Prompt(token_ids=[1] * 100, max_new_tokens=8) for _ in range(4)]
    assert backend._prefill_overlap(prompts) is None  # one scheduling round
    reason = backend._prefill_overlap(prompts * 2)
    assert reason is not None and "8 prompts" in reason and "max_num_seqs 4" in reason
    big = [Prompt(token_ids=[1] * 400, max_new_tokens=8) for _ in range(3)]
    reason = backend._prefill_overlap(big)
    assert reason is not None and "max_num_batched_tokens 1000" in reason


def test_tensorrt_says_when_its_prefills_overlap_decodes() -> None:
    from types import SimpleNamespace

    from llenergymeasure.backends.tensorrt.backend import TensorRTBackend

    backend = TensorRTBackend.__new__(TensorRTBackend)
    backend._spec = SimpleNamespace(max_batch_size=4, max_num_tokens=1000)  # type: ignore[assignment]
    prompts = [Prompt(token_ids=[1] * 100, max_new_tokens=8) for _ in range(4)]
    assert backend._prefill_overlap(prompts) is None
    reason = backend._prefill_overlap(prompts * 2)
    assert reason is not None and "max_batch_size 4" in reason
    backend._spec = SimpleNamespace(max_batch_size=None, max_num_tokens=None)  # type: ignore[assignment]
    assert backend._prefill_overlap(prompts * 100) is None  # limits unknown: one round assumed
