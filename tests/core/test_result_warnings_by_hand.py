"""The result's own warnings, word for word where the text is what a reader acts on: an idle
baseline's warnings carried over as info and its rejection; warmup that did not converge, with the
details a script reads; no warmup at all."""

from __future__ import annotations

from llenergymeasure.backends.base import GenerationOutput, Prompt, RequestRecord
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import BaselineRecord, EnergyMeasurement, ValidityWarning
from llenergymeasure.harness.result import baseline_warnings, harness_warnings
from llenergymeasure.results.models import WarmupRecord


def _w(code: str, message: str, **details: object) -> ValidityWarning:
    return ValidityWarning(code=code, message=message, device=0, details=details)


def test_baseline_warnings_are_renamed_info_after_skipping_missing_baselines() -> None:
    cold = BaselineRecord(
        kind="cold", warnings=[_w("foreign_process", "PID 7 used GPU 0", pids=[7])]
    )
    unknown = BaselineRecord(kind=None, warnings=[_w("thermal_throttle", "GPU 0 throttled")])
    off = BaselineRecord(available=False, unavailable_reason="no GPU", warnings=[_w("x", "y")])
    out = baseline_warnings(None, off, cold, unknown)
    assert [(w.code, w.severity, w.message) for w in out] == [
        ("baseline_foreign_process", "info", "cold idle baseline: PID 7 used GPU 0"),
        ("baseline_thermal_throttle", "info", "idle baseline: GPU 0 throttled"),
    ]
    assert out[0].details == {"pids": [7]} and out[0].device == 0
    assert baseline_warnings() == [] and baseline_warnings(None) == []


def test_a_rejected_baseline_says_why_and_what_is_not_computed() -> None:
    rejected = BaselineRecord(
        kind="resident",
        accepted=False,
        rejected_reason="GPU 0 utilisation reached 30 % (limit 0 %)",
    )
    [w] = baseline_warnings(rejected)
    assert w.code == "baseline_rejected" and w.severity == "warning"
    assert w.message == (
        "resident idle baseline rejected (GPU 0 utilisation reached 30 % (limit 0 %)); energy "
        "above idle is not computed against it"
    )
    assert w.details == {"kind": "resident"}


def _harness(config: ExperimentConfig, warmup: WarmupRecord) -> dict[str, ValidityWarning]:
    out = GenerationOutput(
        requests=[RequestRecord(input_tokens=8, output_tokens=4)], duration_s=1.0
    )
    prompts = [Prompt(token_ids=[1] * 8, max_new_tokens=4)]
    energy = EnergyMeasurement(meter="nvml", duration_s=1.0, total_energy_j=1.0)
    return {w.code: w for w in harness_warnings(config, out, prompts, warmup, energy)}


def test_warmup_not_converged_details_and_no_warmup_text() -> None:
    cv = ExperimentConfig(model="m", warmup={"mode": "cv", "runs": 3, "cv_threshold": 0.05})
    capped = WarmupRecord(
        mode="cv", runs=12, converged=False, final_cv=0.0871, stopped_by="max_s", duration_s=30.04
    )
    w = _harness(cv, capped)["warmup_not_converged"]
    assert w.details == {"stopped_by": "max_s", "final_cv": 0.0871}
    assert w.message.startswith("warmup stopped at its cap (max_s) after 12 batches and 30.0 s ")
    none = ExperimentConfig(model="m", warmup={"mode": "fixed", "runs": 0})
    [only] = _harness(none, WarmupRecord(mode="fixed", runs=0)).values()
    assert only.code == "no_warmup" and only.severity == "warning"
    assert only.message == (
        "warmup.runs is 0: first-call effects (compilation, caches) fall inside the measured window"
    )


def test_the_result_ends_with_a_utc_timestamp() -> None:
    import datetime as dt

    from tests.core.test_build_result_fields import _build

    before = dt.datetime.now(dt.timezone.utc)
    r = _build(EnergyMeasurement(meter="null", available=False, unavailable_reason="no GPU"))
    ended = dt.datetime.fromisoformat(r.ended_at or "")
    assert ended.utcoffset() == dt.timedelta(0)  # comparable with started_at, which is UTC
    assert before <= ended <= dt.datetime.now(dt.timezone.utc)
