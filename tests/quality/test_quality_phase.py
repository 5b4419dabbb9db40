"""The quality phase: after the measured window, each task in its own window, failures recorded.

An end-to-end harness run on ``synthetic/tiny-llama`` (random weights) with a fake NVML GPU, the
per-task records built from lm-eval's output, and the bad-input paths of issue 28: an unknown
task, a hub task with no hub, a capability the backend lacks, a metric that is not
accuracy-type, and an evaluation that crashes inside its energy window.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure import ExperimentConfig, ExperimentResult
from llenergymeasure.config.quality import QualityConfig
from llenergymeasure.energy.types import EnergyMeasurement
from llenergymeasure.harness.core import run_harness
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.quality.runner import evaluate_task
from llenergymeasure.quality.tasks import QualityTaskError, ResolvedTask, resolve_tasks
from tests.helpers import tiny_experiment
from tests.quality.conftest import GEN_TASK, MC_TASK, PPL_TASK

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.timeout(900)

ALL = frozenset({"loglikelihood", "loglikelihood_rolling", "generate_until"})


class FixedMeter:
    """A meter whose every window is ``energy_j`` over ``duration_s`` (or unavailable)."""

    def __init__(self, energy_j: float | None = 30.0, duration_s: float = 3.0) -> None:
        self.energy_j, self.duration_s = energy_j, duration_s
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    def stop(self) -> EnergyMeasurement:
        self.events.append("stop")
        if self.energy_j is None:
            return EnergyMeasurement(
                meter="null",
                available=False,
                unavailable_reason="no GPU",
                duration_s=self.duration_s,
            )
        return EnergyMeasurement(
            meter="fake", total_energy_j=self.energy_j, duration_s=self.duration_s
        )


def test_harness_runs_quality_after_the_window_each_task_in_its_own(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    from llenergymeasure.energy import select_meter
    from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml

    fake = FakeNvml([FakeGpu(trace=ConstantPower(100.0))])
    out = tmp_path / "run"
    starts: list[str] = []

    def factory(backend: str, devices: list[int]) -> Any:
        meter = select_meter("nvml", [0], {}, nvml_module=fake, sample_period_s=0.02)
        real_start = meter.start

        def start() -> None:
            starts.append(json.loads((out / "progress.json").read_text())["phase"])
            real_start()

        meter.start = start  # type: ignore[method-assign]
        return meter

    config = ExperimentConfig.from_dict(
        tiny_experiment(quality={"tasks": [str(MC_TASK), str(GEN_TASK)], "limit": 4})
    )
    request = HarnessRequest(
        config=config,
        settings=HarnessSettings(
            energy_backend="nvml", model_cache_dir=str(shared_model_cache), run_id="q1"
        ),
    )
    result = run_harness(request, out, meter_factory=factory)
    assert ExperimentResult.model_validate_json((out / "result.json").read_text()) == result
    # the measured window first, then one window per task, in the quality phase
    assert starts[-3:] == ["measure", "quality", "quality"] and starts.count("quality") == 2
    q = result.quality
    assert q is not None and q.ok and q.error is None
    assert q.adapter == "PyTorchLM" and q.weights == "random" and q.lm_eval_version
    assert [t.task for t in q.tasks] == ["llem_local_mc", "llem_local_gen"]
    mc, gen = q.tasks
    assert mc.n_items == 4 and mc.n_requests == 16  # 4 questions x 4 choices
    assert {m.name for m in mc.metrics} == {"acc", "acc_norm"}
    acc = next(m for m in mc.metrics if m.name == "acc")
    assert acc.stderr is not None and acc.higher_is_better is True
    for t in q.tasks:
        assert t.ok and t.meter == "nvml" and t.energy_j is not None and t.energy_j > 0
        assert t.duration_s is not None and t.duration_s > 0
        assert t.energy_per_item_j == pytest.approx(t.energy_j / 4)
        assert t.task_hash and len(t.task_hash) == 64 and t.input_tokens
        if t.n_correct:
            assert t.energy_per_correct_j == pytest.approx(t.energy_j / t.n_correct)
        else:
            assert t.energy_per_correct_j is None and t.energy_per_correct_note
    assert gen.correct_metric == "exact_match" and gen.output_tokens and gen.output_tokens > 0
    assert mc.correct_metric == "acc" and mc.n_correct == pytest.approx(acc.value * 4)
    # the measured window is the same record a run without quality writes: tokens of the workload
    assert (result.n_requests, result.output_tokens) == (4, 16)


def _task(path: Path, output_type: str) -> ResolvedTask:
    from llenergymeasure.quality.tasks import _resolve_local

    task = _resolve_local(str(path))
    assert task.output_type == output_type
    return task


class _Lm:
    """Stands in for an adapter when lm-eval's evaluation itself is replaced."""

    def __init__(self) -> None:
        from llenergymeasure.quality.common import TokenCounts

        self.counts = TokenCounts()


def _output(task: str, metrics: dict[str, float], n: int) -> dict[str, Any]:
    results: dict[str, Any] = {"alias": task}
    for name, value in metrics.items():
        results[f"{name},none"] = value
        results[f"{name}_stderr,none"] = 0.1
    return {
        "results": {task: results},
        "higher_is_better": {task: dict.fromkeys(metrics, True)},
        "n-samples": {task: {"original": 12, "effective": n}},
        "versions": {task: 1.0},
        "n-shot": {task: 0},
        "configs": {task: {"task": task}},
        "samples": {task: [{"doc_id": i, "doc_hash": f"h{i}"} for i in range(n)]},
    }


def test_j_per_correct_answer_by_hand() -> None:
    task = _task(MC_TASK, "multiple_choice")
    meter = FixedMeter(energy_j=30.0, duration_s=3.0)
    record = evaluate_task(
        _Lm(),
        task,
        None,
        QualityConfig(tasks=[str(MC_TASK)]),
        meter,
        synchronize=lambda: None,
        idle_power_w=4.0,
        evaluate=lambda **kw: _output(task.name, {"acc": 0.25, "acc_norm": 0.5}, 8),
    )
    assert meter.events == ["start", "stop"]
    # 30 J over 8 items: 3.75 J/item; acc 0.25 x 8 = 2 correct: 15 J per correct answer
    assert record.energy_per_item_j == 3.75
    assert (record.correct_metric, record.n_correct, record.energy_per_correct_j) == (
        "acc",
        2.0,
        15.0,
    )
    assert record.energy_above_idle_j == pytest.approx(30.0 - 4.0 * 3.0)
    chosen = evaluate_task(
        _Lm(),
        task,
        None,
        QualityConfig(tasks=[str(MC_TASK)], correct_metric="acc_norm"),
        meter,
        synchronize=lambda: None,
        idle_power_w=None,
        evaluate=lambda **kw: _output(task.name, {"acc": 0.25, "acc_norm": 0.5}, 8),
    )
    assert (chosen.n_correct, chosen.energy_per_correct_j, chosen.energy_above_idle_j) == (
        4.0,
        7.5,
        None,
    )


def test_no_accuracy_metric_means_no_j_per_correct_answer_and_says_why() -> None:
    task = _task(PPL_TASK, "loglikelihood_rolling")
    record = evaluate_task(
        _Lm(),
        task,
        None,
        QualityConfig(tasks=[str(PPL_TASK)]),
        FixedMeter(),
        synchronize=lambda: None,
        idle_power_w=None,
        evaluate=lambda **kw: _output(task.name, {"word_perplexity": 31.0}, 6),
    )
    assert record.ok and record.energy_per_correct_j is None and record.correct_metric is None
    assert record.energy_per_correct_note is not None
    assert "word_perplexity" in record.energy_per_correct_note
    assert "no accuracy-type metric" in record.energy_per_correct_note
    asked = evaluate_task(
        _Lm(),
        task,
        None,
        QualityConfig(tasks=[str(PPL_TASK)], correct_metric="exact_match"),
        FixedMeter(),
        synchronize=lambda: None,
        idle_power_w=None,
        evaluate=lambda **kw: _output(task.name, {"word_perplexity": 31.0}, 6),
    )
    assert (
        asked.energy_per_correct_note and "reports no exact_match" in asked.energy_per_correct_note
    )


def test_crash_inside_the_window_keeps_its_energy_and_records_the_failure() -> None:
    task = _task(GEN_TASK, "generate_until")
    meter = FixedMeter(energy_j=12.0, duration_s=2.0)
    synced: list[int] = []

    def crash(**kw: Any) -> Any:
        raise RuntimeError("engine died mid-task")

    record = evaluate_task(
        _Lm(),
        task,
        None,
        QualityConfig(tasks=[str(GEN_TASK)]),
        meter,
        synchronize=lambda: synced.append(1),
        idle_power_w=None,
        evaluate=crash,
    )
    assert meter.events == ["start", "stop"] and len(synced) == 2
    assert not record.ok and record.error == "RuntimeError: engine died mid-task"
    assert (record.energy_j, record.duration_s, record.meter) == (12.0, 2.0, "fake")
    assert record.metrics == [] and record.energy_per_correct_j is None


def test_unavailable_energy_is_said_not_invented() -> None:
    task = _task(MC_TASK, "multiple_choice")
    record = evaluate_task(
        _Lm(),
        task,
        None,
        QualityConfig(tasks=[str(MC_TASK)]),
        FixedMeter(energy_j=None),
        synchronize=lambda: None,
        idle_power_w=5.0,
        evaluate=lambda **kw: _output(task.name, {"acc": 0.5}, 4),
    )
    assert record.energy_j is None and record.energy_unavailable_reason == "no GPU"
    assert record.energy_per_item_j is None and record.energy_per_correct_j is None
    assert record.n_correct == 2.0 and record.energy_per_correct_note == "no energy measured"


def test_phase_records_a_failed_evaluation_and_keeps_the_result(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    """A task YAML that breaks lm-eval when built: result.json still has the measured window."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "task: llem_bad\ndataset_path: json\ndataset_kwargs: {data_files: {test: missing.jsonl}}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: '{{question}}'\n"
        "doc_to_target: '{{answer}}'\n"
    )
    config = ExperimentConfig.from_dict(tiny_experiment(quality={"tasks": [str(bad)], "limit": 2}))
    request = HarnessRequest(
        config=config,
        settings=HarnessSettings(
            energy_backend="none", model_cache_dir=str(shared_model_cache), run_id="q2"
        ),
    )
    out = tmp_path / "run"
    result = run_harness(request, out)
    assert (out / "result.json").exists() and not (out / "error.json").exists()
    assert result.n_requests == 4 and result.output_tokens == 16
    q = result.quality
    assert q is not None and not q.ok
    (task,) = q.tasks
    assert not task.ok and task.error and "missing.jsonl" in task.error
    assert task.duration_s is not None and task.energy_unavailable_reason


def test_unknown_task_and_hub_task_without_hub_fail_fast_with_guidance() -> None:
    quality = QualityConfig(tasks=["hellaswagg"])
    with pytest.raises(QualityTaskError) as info:
        resolve_tasks(quality, ALL, "PyTorch", hub_check=lambda: None)
    text = str(info.value)
    assert "unknown lm-eval task 'hellaswagg'" in text and "hellaswag" in text.split("mean")[1]
    assert ".yaml" in text

    with pytest.raises(QualityTaskError) as info:
        resolve_tasks(
            QualityConfig(tasks=["hellaswag", str(MC_TASK)]),
            ALL,
            "PyTorch",
            hub_check=lambda: "HF_HUB_OFFLINE=1",
        )
    text = str(info.value)
    assert "'hellaswag' (dataset Rowan/hellaswag)" in text and "HF_HUB_OFFLINE=1" in text
    assert "dataset_path: json" in text and "data_files" in text and "hellaswag.yaml" in text
    assert str(MC_TASK) not in text  # the local task is fine


def test_named_task_the_backend_cannot_score_is_refused_before_evaluation() -> None:
    with pytest.raises(QualityTaskError) as info:
        resolve_tasks(
            QualityConfig(tasks=["hellaswag", str(GEN_TASK)]),
            frozenset({"generate_until"}),
            "TensorRT-LLM",
            hub_check=lambda: None,
        )
    assert "TensorRT-LLM cannot compute loglikelihood (needed by hellaswag)" in str(info.value)


def test_local_tasks_resolve_without_lm_evals_index_and_data_next_to_the_yaml() -> None:
    _, tasks = resolve_tasks(
        QualityConfig(tasks=[str(MC_TASK), str(GEN_TASK)]),
        ALL,
        "PyTorch",
        hub_check=lambda: pytest.fail("local data needs no hub"),  # type: ignore[arg-type,return-value]
    )
    mc = tasks[0]
    assert (mc.name, mc.output_type) == ("llem_local_mc", "multiple_choice")
    assert isinstance(mc.spec, dict)
    assert mc.spec["dataset_kwargs"]["data_files"]["test"] == str(MC_TASK.parent / "mc.jsonl")
