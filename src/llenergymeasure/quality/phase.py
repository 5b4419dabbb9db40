"""The harness's quality phase: after the measured window, before ``result.json`` is written.

``run_quality_phase`` is the harness's one call. With no ``quality:`` section it returns the
result untouched. Otherwise it resolves the tasks (``tasks.py``), builds the backend's lm-eval
model over the engine instance the window measured (``adapter.py``) and evaluates each task in its
own energy window from the same meter (``runner.py``). Nothing here can fail the experiment: the
measured window's result is already complete, and whatever goes wrong (an unknown task, no hub, a
crash) is written into ``result.quality`` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.results.quality_models import QualityRecord, TaskQuality


def run_quality_phase(
    result: ExperimentResult,
    backend: Any,
    meter: Any,
    config: ExperimentConfig,
    *,
    enter: Callable[[str, str | None], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    hub_check: Callable[[], str | None] | None = None,
) -> ExperimentResult:
    """``result`` with its ``quality`` block (unchanged when the config has no ``quality:``)."""
    quality = config.quality
    if quality is None:
        return result
    if enter is not None:
        enter("quality", f"{len(quality.tasks)} lm-eval task(s)")
    t0 = clock()
    record = QualityRecord(weights=result.model.weights)
    try:
        import lm_eval

        from llenergymeasure.quality.adapter import adapter_for
        from llenergymeasure.quality.runner import evaluate_task
        from llenergymeasure.quality.tasks import hub_unreachable, resolve_tasks

        record.lm_eval_version = str(getattr(lm_eval, "__version__", None))
        supported = config.backend_section().quality_requests()
        from llenergymeasure.backends.registry import get as backend_spec

        manager, tasks = resolve_tasks(
            quality,
            supported,
            backend_spec(config.backend).title,
            hub_check=hub_check or hub_unreachable,
        )
        lm = adapter_for(backend, quality)
        record.adapter = type(lm).__name__
        idle = _idle_power_w(result)
        done: list[TaskQuality] = []
        for task in tasks:
            if enter is not None:
                enter("quality", task.name)
            done.append(
                evaluate_task(
                    lm,
                    task,
                    manager,
                    quality,
                    meter,
                    synchronize=backend.synchronize,
                    idle_power_w=idle,
                )
            )
        record.tasks = done
        record.ok = all(t.ok for t in done)
    except ImportError as exc:
        if not (exc.name or "").startswith("lm_eval"):
            record.ok, record.error = False, f"ImportError: {exc}"
            record.duration_s = clock() - t0
            return result.model_copy(update={"quality": record})
        record.ok = False
        record.error = f"lm-evaluation-harness is not installed ({exc}); pip install 'llenergymeasure[quality]'"
    except Exception as exc:  # the measured window's result stands; say why quality is missing
        record.ok = False
        record.error = f"{type(exc).__name__}: {exc}"
    record.duration_s = clock() - t0
    return result.model_copy(update={"quality": record})


def _idle_power_w(result: ExperimentResult) -> float | None:
    """The resident idle power of the measured GPUs (W, summed), when a baseline was applied."""
    baseline = result.baseline
    if baseline is None or not baseline.available or not baseline.accepted:
        return None
    if not baseline.idle_power_w:
        return None
    return float(sum(baseline.idle_power_w.values()))
