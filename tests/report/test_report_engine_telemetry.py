"""A served run's engine state (``backend: openai``'s ``/metrics``) beside its power (issue 27
item 4): the result's ``engine_telemetry`` field, or ``extra.engine_telemetry`` of results written
before it was one, and ``engine_telemetry.csv`` beside result.json."""

from __future__ import annotations

import html
import re
import struct
from pathlib import Path

import pytest
from report_builders import ENGINE_TELEMETRY_CSV, add_engine_telemetry, build_study_dir

from llenergymeasure.report import generate_report
from llenergymeasure.report.engine_panel import read_engine_series
from llenergymeasure.results.loading import load_study_dir

pytest.importorskip("matplotlib")


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk
    return int(width), int(height)


@pytest.mark.parametrize("legacy", [False, True], ids=["field", "extra_of_an_older_result"])
def test_a_served_run_shows_running_waiting_and_kv_cache_beneath_its_power(
    tmp_path: Path, legacy: bool
) -> None:
    study_dir, study = build_study_dir(tmp_path)
    _, run_id = add_engine_telemetry(study_dir, study, legacy=legacy)
    loaded = load_study_dir(study_dir)  # read back from the files, as `llem report` does
    served = next(r for r in loaded.runs if r.experiment_id == run_id)
    assert served.engine_telemetry is not None and served.engine_telemetry.dialect == "vllm"
    assert "engine_telemetry" not in served.extra
    text = html.unescape(generate_report(loaded, study_dir).read_text())
    assert "the engine's own state beneath their" in text
    assert f'alt="power and engine state over time of run {run_id}"' in text
    caption = re.search(rf"Run <code>{run_id}</code>: .*?</figcaption>", text, re.S)
    assert caption is not None
    assert "running requests mean 6.4 (max 8), waiting mean 1.8 (max 3)" in caption.group(0)
    assert "KV cache mean 42 % (max 60 %)" in caption.group(0)
    assert "mean running batch 80% of the 8 asked" in caption.group(0)
    # the served run's figure has the second panel: taller than another run's power-only figure
    other = next(r.experiment_id for r in loaded.runs if r.experiment_id != run_id)
    served_png = _png_size(study_dir / "figures" / f"power_{run_id}.png")
    power_png = _png_size(study_dir / "figures" / f"power_{other}.png")
    assert served_png[0] == power_png[0] and served_png[1] > 1.5 * power_png[1]
    assert f'alt="power over time of run {other}"' in text


def test_a_missing_series_file_is_named_and_the_power_still_drawn(tmp_path: Path) -> None:
    study_dir, study = build_study_dir(tmp_path)
    served_study, run_id = add_engine_telemetry(study_dir, study)
    (study_dir / run_id / ENGINE_TELEMETRY_CSV).unlink()
    text = html.unescape(generate_report(served_study, study_dir).read_text())
    assert f"engine telemetry: {ENGINE_TELEMETRY_CSV} not found in {run_id}/" in text
    assert f'alt="power over time of run {run_id}"' in text  # the power figure alone


def test_a_served_run_without_power_still_shows_the_engine(tmp_path: Path) -> None:
    # a CPU host (no energy, no power series): the engine's state is still worth seeing
    study_dir, study = build_study_dir(tmp_path, with_energy=False)
    served_study, run_id = add_engine_telemetry(study_dir, study)
    text = html.unescape(generate_report(served_study, study_dir).read_text())
    assert f'alt="power and engine state over time of run {run_id}"' in text
    assert (study_dir / "figures" / f"power_{run_id}.png").exists()
    assert "meter null wrote no time series" in text


def test_the_series_reader_refuses_a_file_without_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "engine_telemetry.csv"
    path.write_text("t,power_w\n0,1\n")
    with pytest.raises(
        ValueError, match=r"needs columns time_s and one of running.*has t, power_w"
    ):
        read_engine_series(path)
    path.write_text("time_s,running,waiting,kv_cache_usage\n0.0,2.0,,0.5\n1.0,,1.0,nan\n")
    series = read_engine_series(path)
    assert series.t_s == [0.0, 1.0]
    assert series.running == [2.0, None] and series.waiting == [None, 1.0]
    assert series.kv_cache_usage == [0.5, None]  # a non-finite reading is a gap
