"""Evaluate each task in its own energy window and turn lm-eval's output into ``TaskQuality``.

Per task: synchronise -> meter start -> ``lm_eval.simple_evaluate`` (one task, the adapter over
the loaded engine) -> synchronise -> meter stop. The window's energy is kept whatever the
evaluation did: a task that crashes inside its window is recorded with ``ok: false``, its error,
and the energy it spent. J per item divides the raw window energy by the documents evaluated; J
per correct answer divides it by ``value x items`` of an accuracy-type metric (docs/quality.md).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from llenergymeasure.config.quality import ACCURACY_METRICS, DEFAULT_CORRECT_METRICS, QualityConfig
from llenergymeasure.quality.tasks import ResolvedTask
from llenergymeasure.results.quality_models import MetricValue, TaskQuality

#: bootstrap resamples for metrics without a closed-form standard error (lm-eval's default is
#: 100000: minutes per task on a CPU); mean-aggregated metrics (acc, exact_match) use the
#: closed form and are unaffected
BOOTSTRAP_ITERS = 1000


def evaluate_task(
    lm: Any,
    task: ResolvedTask,
    manager: Any,
    quality: QualityConfig,
    meter: Any,
    *,
    synchronize: Callable[[], None],
    idle_power_w: float | None,
    clock: Callable[[], float] = time.perf_counter,
    evaluate: Callable[..., Any] | None = None,
) -> TaskQuality:
    """One task in its own energy window; never raises for what happens inside the window."""
    if evaluate is None:
        from lm_eval import simple_evaluate

        evaluate = simple_evaluate
    counts = getattr(lm, "counts", None)
    if counts is not None:
        counts.reset()
    output, error = None, None
    synchronize()
    meter.start()
    t0 = clock()
    try:
        output = evaluate(
            model=lm,
            tasks=[task.spec],
            num_fewshot=quality.num_fewshot,
            batch_size=quality.batch_size,
            limit=quality.limit,
            task_manager=manager,
            log_samples=True,
            bootstrap_iters=BOOTSTRAP_ITERS,
            random_seed=quality.seed,
            numpy_random_seed=quality.seed,
            torch_random_seed=quality.seed,
            fewshot_random_seed=quality.seed,
        )
    except Exception as exc:  # the energy of the window is kept; the record says what failed
        error = f"{type(exc).__name__}: {exc}"
    finally:
        synchronize()
        duration = clock() - t0
        measurement = meter.stop()
    record = _energy_fields(measurement, duration, idle_power_w)
    record.update(source=task.source, task=task.name, output_type=task.output_type)
    if counts is not None:
        record.update(
            n_requests=counts.requests,
            input_tokens=counts.input_tokens,
            output_tokens=counts.output_tokens,
        )
    if error is None:
        try:
            record.update(_scores(output, task.name, quality, record.get("energy_j")))
        except Exception as exc:  # lm-eval's output not as expected: keep the energy
            error = f"reading lm-eval's results failed: {type(exc).__name__}: {exc}"
    if error is not None:
        record.update(ok=False, error=error)
    return TaskQuality(**record)


def _energy_fields(measurement: Any, duration: float, idle_power_w: float | None) -> dict[str, Any]:
    energy = measurement.total_energy_j if getattr(measurement, "available", False) else None
    window = float(getattr(measurement, "duration_s", 0.0) or duration)
    above = None
    if energy is not None and idle_power_w is not None:
        above = max(0.0, energy - idle_power_w * window)
    return {
        "duration_s": window,
        "energy_j": energy,
        "energy_above_idle_j": above,
        "meter": getattr(measurement, "meter", None),
        "energy_unavailable_reason": None if energy is not None else measurement.unavailable_reason,
    }


def _scores(
    output: Any, name: str, quality: QualityConfig, energy_j: float | None
) -> dict[str, Any]:
    if not output or name not in output.get("results", {}):
        raise ValueError(f"lm-eval returned no results for task {name!r}")
    raw = output["results"][name]
    higher = output.get("higher_is_better", {}).get(name, {})
    metrics = []
    for key, value in raw.items():
        if "," not in key or "_stderr," in key:
            continue
        metric, filt = key.split(",", 1)
        stderr = raw.get(f"{metric}_stderr,{filt}")
        metrics.append(
            MetricValue(
                name=metric,
                filter=filt,
                value=_number(value),
                stderr=_number(stderr),
                higher_is_better=higher.get(metric),
            )
        )
    n_items = int(output["n-samples"][name]["effective"])
    out: dict[str, Any] = {
        "metrics": metrics,
        "n_items": n_items,
        "task_version": output.get("versions", {}).get(name),
        "num_fewshot": output.get("n-shot", {}).get(name),
        "task_hash": task_hash(
            output.get("configs", {}).get(name), output.get("samples", {}).get(name)
        ),
    }
    if energy_j is not None and n_items:
        out["energy_per_item_j"] = energy_j / n_items
    out.update(_per_correct(metrics, n_items, quality.correct_metric, energy_j))
    return out


def _per_correct(
    metrics: list[MetricValue], n_items: int, wanted: str | None, energy_j: float | None
) -> dict[str, Any]:
    names = [wanted] if wanted else list(DEFAULT_CORRECT_METRICS)
    chosen = None
    for name in names:
        candidates = [m for m in metrics if m.name == name and m.value is not None]
        if candidates:  # the unfiltered value first, else the first filter's
            chosen = next((m for m in candidates if m.filter == "none"), candidates[0])
            break
    if chosen is None:
        reported = ", ".join(sorted({m.name for m in metrics})) or "none"
        asked = wanted or " or ".join(DEFAULT_CORRECT_METRICS)
        accuracy_like = sorted({m.name for m in metrics} & ACCURACY_METRICS)
        hint = (
            f"; set quality.correct_metric to one of {', '.join(accuracy_like)}"
            if accuracy_like
            else "; it reports no accuracy-type metric, so J per correct answer has no meaning"
        )
        return {
            "energy_per_correct_note": f"the task reports no {asked} (it reports {reported}){hint}"
        }
    assert chosen.value is not None
    n_correct = round(chosen.value * n_items, 6)
    out: dict[str, Any] = {"correct_metric": chosen.name, "n_correct": n_correct}
    if energy_j is None:
        out["energy_per_correct_note"] = "no energy measured"
    elif n_correct <= 0:
        out["energy_per_correct_note"] = "no answer was correct"
    else:
        out["energy_per_correct_j"] = energy_j / n_correct
    return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def task_hash(config: Any, samples: Any) -> str:
    """SHA-256 of the task's resolved config and, in order, each evaluated document's hashes."""
    docs = [
        [s.get("doc_id"), s.get("doc_hash"), s.get("prompt_hash"), s.get("target_hash")]
        for s in (samples or [])
        if isinstance(s, dict)
    ]
    payload = json.dumps({"config": config, "docs": docs}, sort_keys=True, default=_stable)
    return hashlib.sha256(payload.encode()).hexdigest()


def _stable(value: Any) -> str:
    """A JSON stand-in that is the same in every process (no memory addresses)."""
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return type(value).__name__ if " at 0x" in repr(value) else repr(value)
