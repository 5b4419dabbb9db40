"""The ``quality:`` section of an experiment: accuracy from lm-evaluation-harness beside energy.

Pure data and its checks (no lm-eval import). After the measured window the harness runs these
tasks on the same engine instance, each in its own energy window (``quality/``,
docs/quality.md). A task is an lm-eval task name (resolved from lm-eval's registry when the
evaluation starts) or a local task YAML file (``*.yaml``/``*.yml``), whose ``output_type`` is
read here so that a backend that cannot score log-likelihoods refuses it at validation. A named
task's output type is read from lm-eval's own task YAMLs when lm-eval is installed
(``lm_eval_index.py``, no lm-eval import): an unknown name, a group or a tag is refused at
validation too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: lm-eval request types, by the ``output_type`` of a task that issues them
REQUESTS_OF_OUTPUT_TYPE: dict[str, frozenset[str]] = {
    "loglikelihood": frozenset({"loglikelihood"}),
    "multiple_choice": frozenset({"loglikelihood"}),
    "loglikelihood_rolling": frozenset({"loglikelihood_rolling"}),
    "generate_until": frozenset({"generate_until"}),
}

#: lm-eval's default ``output_type`` when a task YAML names none
DEFAULT_OUTPUT_TYPE = "generate_until"

#: metrics whose per-item value is 1 for a correct answer and 0 otherwise, so that value x items
#: is the number of correct answers (J per correct answer is defined for these alone)
ACCURACY_METRICS = frozenset({"acc", "acc_norm", "acc_mutual_info", "exact_match", "em"})

#: the metric J per correct answer uses when ``correct_metric`` is not set: the first of these
#: that a task reports
DEFAULT_CORRECT_METRICS = ("acc", "exact_match")


def is_local_task(task: str) -> bool:
    """A task given as a local YAML file rather than an lm-eval task name."""
    return task.endswith((".yaml", ".yml"))


def local_task_output_type(path: str | Path) -> str:
    """The ``output_type`` a local task YAML declares (lm-eval's default when it names none).

    lm-eval's ``!function`` tags are read as plain strings: only the output type matters here.
    """
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        return None

    _Loader.add_multi_constructor("!", _tag)
    with open(path) as fh:
        data = yaml.load(fh, Loader=_Loader)
    if not isinstance(data, dict):
        raise ValueError(f"quality.tasks: {path} is not a task YAML (a mapping with `task:`)")
    value = data.get("output_type", DEFAULT_OUTPUT_TYPE)
    if value not in REQUESTS_OF_OUTPUT_TYPE:
        raise ValueError(
            f"quality.tasks: {path} has output_type {value!r}; lm-eval knows "
            f"{', '.join(sorted(REQUESTS_OF_OUTPUT_TYPE))}"
        )
    return str(value)


def requests_problem(
    tasks_to_output_type: dict[str, str], supported: frozenset[str], engine: str
) -> str | None:
    """Why an engine cannot evaluate these tasks (naming them), or None when it can."""
    missing: dict[str, list[str]] = {}
    for task, output_type in tasks_to_output_type.items():
        for request in sorted(REQUESTS_OF_OUTPUT_TYPE[output_type] - supported):
            missing.setdefault(request, []).append(task)
    if not missing:
        return None
    parts = [f"{request} (needed by {', '.join(tasks)})" for request, tasks in missing.items()]
    return (
        f"quality.tasks: {engine} cannot compute {'; '.join(parts)}; it supports "
        f"{', '.join(sorted(supported)) or 'no lm-eval request type'}; use generation tasks "
        "(output_type: generate_until) or a backend that scores log-likelihoods"
    )


class QualityConfig(BaseModel):
    """lm-evaluation-harness tasks run after the measured window, on the same engine instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[str] = Field(
        ...,
        min_length=1,
        description="lm-eval task names, or local task YAML files (*.yaml) over local data",
    )
    limit: int | float | None = Field(
        None,
        description="items per task: an int (>= 1), or a fraction in (0, 1); none: every item",
    )
    num_fewshot: int | None = Field(None, ge=0, description="none: the task's own default")
    batch_size: int = Field(1, ge=1, le=65_536, description="requests per engine call")
    seed: int = Field(1234, ge=0, description="lm-eval's random, numpy, torch and few-shot seeds")
    correct_metric: str | None = Field(
        None,
        description="the accuracy-type metric J per correct answer uses; none: acc, else "
        "exact_match, whichever a task reports",
    )

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        out = []
        for task in v:
            task = task.strip()
            if not task:
                raise ValueError(
                    "quality.tasks: an entry is empty; give an lm-eval task name or a YAML file"
                )
            if task in out:
                raise ValueError(f"quality.tasks: {task!r} is listed twice")
            out.append(task)
        return out

    @field_validator("limit")
    @classmethod
    def _limit(cls, v: int | float | None) -> int | float | None:
        if v is None:
            return v
        if isinstance(v, float) and not v.is_integer():
            if not 0.0 < v < 1.0:
                raise ValueError(
                    f"quality.limit: {v} is neither a whole number of items (>= 1) nor a "
                    "fraction in (0, 1)"
                )
            return v
        if int(v) < 1:
            raise ValueError(f"quality.limit: {v} items; give at least 1 (or none for every item)")
        return int(v)

    @field_validator("correct_metric")
    @classmethod
    def _correct_metric(cls, v: str | None) -> str | None:
        if v is not None and v not in ACCURACY_METRICS:
            raise ValueError(
                f"quality.correct_metric: {v!r} is not an accuracy-type metric (one whose item "
                "value is 1 for a correct answer, 0 otherwise), so J per correct answer has no "
                f"meaning for it; use one of {', '.join(sorted(ACCURACY_METRICS))}"
            )
        return v

    @model_validator(mode="after")
    def _local_files(self) -> QualityConfig:
        for task in self.local_tasks():
            if not Path(task).is_file():
                raise ValueError(
                    f"quality.tasks: the task YAML {task} does not exist (relative paths are "
                    "relative to the config file)"
                )
        return self

    def local_tasks(self) -> list[str]:
        return [t for t in self.tasks if is_local_task(t)]

    def local_output_types(self) -> dict[str, str]:
        """``output_type`` of every local task YAML."""
        return {task: local_task_output_type(task) for task in self.local_tasks()}

    def output_types(self) -> dict[str, str]:
        """``output_type`` of every task whose type can be known before the evaluation: local
        YAMLs, and named tasks from lm-eval's own YAMLs when lm-eval is installed here (a
        Python-class task is left to the evaluation). Raises ``ValueError`` for an unknown
        name (with close matches), a group or a tag."""
        from llenergymeasure.config.lm_eval_index import named_task_output_types

        named = named_task_output_types([t for t in self.tasks if not is_local_task(t)])
        out = self.local_output_types()
        out.update(named)
        return {task: out[task] for task in self.tasks if task in out}
