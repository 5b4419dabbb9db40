"""Idle baselines when runs go side by side: keyed per physical GPU, read from the cache, but a
window measured while a neighbour may run is never written to it (``cache_write=False``)."""

from __future__ import annotations

import json
from pathlib import Path

from llenergymeasure.energy.baseline import CACHE_FILE, measure_idle_baseline
from tests.core.test_baseline_cache_and_settle_by_hand import KEY0, KEY1, Clock, Windows, steady


def test_side_by_side_reads_the_per_gpu_cache_but_never_writes_it(tmp_path: Path) -> None:
    meter = Windows(steady(4))
    rec = measure_idle_baseline(
        meter, 4.0, tmp_path, 3600, cache_write=False, clock=Clock(1000.0), sleep=meter.sleep
    )
    assert rec.idle_power_w == {0: 80.0, 1: 60.0} and not rec.from_cache
    assert not (tmp_path / CACHE_FILE).exists()  # measured beside neighbours: not cached

    # measured alone, the same window is cached, one entry per physical GPU (UUID first)
    alone = Windows(steady(4))
    measure_idle_baseline(alone, 4.0, tmp_path, 3600, clock=Clock(1000.0), sleep=alone.sleep)
    entries = json.loads((tmp_path / CACHE_FILE).read_text())["entries"]
    assert sorted(entries) == sorted([f"{KEY0}|cold", f"{KEY1}|cold"])
    # and a side-by-side run reads it back (no window measured), still writing nothing new
    reader = Windows([])
    before = (tmp_path / CACHE_FILE).read_text()
    cached = measure_idle_baseline(
        reader, 4.0, tmp_path, 3600, cache_write=False, clock=Clock(1010.0), sleep=reader.sleep
    )
    assert cached.from_cache and cached.idle_power_w == {0: 80.0, 1: 60.0} and reader.calls == 0
    assert (tmp_path / CACHE_FILE).read_text() == before
