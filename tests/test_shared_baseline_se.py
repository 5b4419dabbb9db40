"""Issue 25 item 13 (part): a cross-cycle interval of energy above idle includes the error of an
idle baseline that several cycles share (read from the cache), worked out by hand.

SE(mean) = sqrt(sd^2 / n + shared^2), shared = sqrt(sum over groups g of >= 2 runs sharing one
baseline of ((1/n) sum_{i in g} u_i)^2), u_i = the run's own baseline SE; half-width = t(n-1) SE.
"""

from __future__ import annotations

import math

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import BaselineRecord
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.results.stats import shared_baseline_se, summarise
from tests.report.report_builders import synthetic_result

CFG = ExperimentConfig(model="synthetic/tiny-llama", batch_size=2, n=4, max_output_tokens=8)
METRIC = "energy_per_output_token_above_idle_j"


def _run(i: int, value: float, se: float, measured_at: str) -> ExperimentResult:
    r = synthetic_result(CFG, f"00{i}_c{i}", i)
    baseline = BaselineRecord(
        idle_power_w={0: 80.0},
        idle_power_se_w={0: 0.5},
        cache_key="GPU-uuid|580|700|resident|" + CFG.config_hash[:8],
        measured_at=measured_at,
        from_cache=i > 1,
        kind="resident",
    )
    return r.model_copy(
        update={
            "baseline": baseline,
            "energy_per_output_token_above_idle_j": value,
            "energy_per_output_token_above_idle_se_j": se,
            "total_energy_above_idle_j": value * 32,
            "total_energy_above_idle_se_j": se * 32,
        }
    )


def _summary(runs: list[ExperimentResult]):
    (s,) = summarise(runs)
    return s


def test_one_baseline_shared_by_every_cycle_widens_the_interval_by_hand() -> None:
    runs = [_run(i, v, 0.05, "2026-12-01T10:00:00") for i, v in ((1, 1.0), (2, 1.2), (3, 1.1))]
    s = _summary(runs)
    m = s.metrics[METRIC]
    # by hand: mean 1.1, sd 0.1, spread SE 0.1/sqrt(3) = 0.0577350; shared (0.05*3)/3 = 0.05;
    # SE = sqrt(0.1^2/3 + 0.05^2) = sqrt(0.00583333) = 0.0763763; t(2) = 4.3026527
    assert m.mean == pytest.approx(1.1) and m.std == pytest.approx(0.1)
    assert m.ci95_half_width == pytest.approx(4.3026527 * 0.0763763, rel=1e-6)  # 0.328621
    assert m.ci95_low == pytest.approx(1.1 - 0.328621, abs=1e-5)
    spread_only = 4.3026527 * 0.1 / math.sqrt(3)  # 0.248414: what the summary gave before
    assert m.ci95_half_width > spread_only * 1.3
    # the total above idle too (32 tokens a run: every number x 32)
    assert s.metrics["total_energy_above_idle_j"].ci95_half_width == pytest.approx(
        32 * 4.3026527 * 0.0763763, rel=1e-6
    )
    # raw energy has no baseline in it: its interval is the spread's alone
    raw = s.metrics["energy_per_output_token_j"]
    assert raw.std is not None and raw.ci95_half_width == pytest.approx(
        4.3026527 * raw.std / math.sqrt(3)
    )
    (w,) = [w for w in s.warnings if w.code == "shared_baseline"]
    assert w.severity == "info" and METRIC in w.message
    assert w.details[METRIC]["shared_baseline_se"] == pytest.approx(0.05)
    assert w.details[METRIC]["ci95_half_width_spread_only"] == pytest.approx(spread_only)


def test_a_baseline_per_run_is_already_in_the_spread() -> None:
    runs = [_run(i, v, 0.05, f"2026-12-01T1{i}:00:00") for i, v in ((1, 1.0), (2, 1.2), (3, 1.1))]
    m = _summary(runs).metrics[METRIC]
    assert m.ci95_half_width == pytest.approx(4.3026527 * 0.1 / math.sqrt(3))
    assert not [w for w in _summary(runs).warnings if w.code == "shared_baseline"]


def test_two_of_three_cycles_sharing_one_baseline() -> None:
    a = ("k", "t1", "0:80.0")
    b = ("k", "t2", "0:80.0")
    # runs 1 and 2 share a (u 0.05, 0.07), run 3 has its own: (0.05 + 0.07) / 3 = 0.04
    assert shared_baseline_se([(a, 0.05), (a, 0.07), (b, 0.05)]) == pytest.approx(0.04)
    # two shared groups are independent: sqrt(((0.05+0.05)/4)^2 + ((0.02+0.02)/4)^2)
    assert shared_baseline_se([(a, 0.05), (a, 0.05), (b, 0.02), (b, 0.02)]) == pytest.approx(
        math.sqrt(0.025**2 + 0.01**2)
    )
    # a run whose record cannot tell its baseline counts as its own
    assert shared_baseline_se([(None, 0.05), (None, 0.05)]) == 0.0


def test_the_archive_configs_view_gives_the_same_interval(tmp_path) -> None:
    """The archive's SQL (``configs`` view) adds the shared baseline's SE as the summaries do."""
    pytest.importorskip("duckdb")
    from llenergymeasure.results.archive.store import Archive
    from llenergymeasure.results.export import write_exports
    from llenergymeasure.results.loading import load_study_dir
    from tests.report.report_builders import build_study_dir

    study_dir, _ = build_study_dir(tmp_path / "results", fail_run=None, write_aggregate=False)
    for k, folder in enumerate(sorted(p for p in study_dir.iterdir() if p.is_dir()), start=1):
        r = ExperimentResult.model_validate_json((folder / "result.json").read_text())
        shared = _run(k, 0.0, 0.0, "2026-12-01T10:00:00").baseline
        value = 1.0 + 0.1 * k
        (folder / "result.json").write_text(
            r.model_copy(
                update={
                    "baseline": shared,
                    "energy_per_output_token_above_idle_j": value,
                    "energy_per_output_token_above_idle_se_j": 0.05 * value / r.output_tokens,
                    "total_energy_above_idle_j": value * r.output_tokens,
                    "total_energy_above_idle_se_j": 0.05 * value,
                }
            ).model_dump_json()
        )
    study = load_study_dir(study_dir)
    write_exports(study, study_dir)
    rows = Archive([tmp_path / "results"], cache_dir=None, cache=False).records(
        "SELECT config_hash, total_energy_above_idle_j_ci95_half_width AS tot, "
        f"{METRIC}_ci95_half_width AS per_token, {METRIC}_std AS sd FROM configs"
    )
    assert len(rows) == 4
    for row in rows:
        (s,) = [s for s in study.summaries if s.config_hash == row["config_hash"]]
        assert row["per_token"] == pytest.approx(s.metrics[METRIC].ci95_half_width, rel=1e-9)
        assert row["tot"] == pytest.approx(
            s.metrics["total_energy_above_idle_j"].ci95_half_width, rel=1e-9
        )
        # and wider than the spread alone (each config's two cycles share the baseline)
        assert row["per_token"] > 12.706204736 * row["sd"] / math.sqrt(2)
