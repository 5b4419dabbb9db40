"""Builders of valid test inputs, in one place: an ``ExperimentResult`` without running anything,
a study YAML on disk and the environment of an ``llem`` subprocess.

``make_result(**overrides)`` is the one hand-built result: any field named in ``overrides``
replaces the default (an unknown name fails, since ``ExperimentResult`` forbids extra fields).
The experiment dict, the user config file and ``write`` live in ``tests/helpers.py`` beside the
bounded waits; this module builds on them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import EnergyMeasurement
from llenergymeasure.environment.snapshot import EnvironmentSnapshot
from llenergymeasure.results.models import ExperimentResult, LoadRecord, ModelRecord, WarmupRecord
from tests.helpers import tiny_experiment, write


def make_result(config: ExperimentConfig | None = None, **overrides: Any) -> ExperimentResult:
    """A valid result for ``config`` (default: model ``m``): 2 requests, 8 input and 10 output
    tokens in 2 s (5 tok/s, 1 req/s), an NVML energy record with no figures, one fixed warmup
    run, a 1 s load. ``overrides`` replace any field (``experiment_id`` defaults to ``r1``)."""
    config = config if config is not None else ExperimentConfig(model="m")
    fields: dict[str, Any] = {
        "llenergymeasure_version": "0",
        "experiment_id": "r1",
        "config": config,
        "config_hash": config.config_hash,
        "environment": EnvironmentSnapshot(),
        "started_at": "s",
        "ended_at": "e",
        "model": ModelRecord(id=config.model),
        "load": LoadRecord(duration_s=1.0),
        "warmup": WarmupRecord(mode="fixed", runs=1),
        "energy": EnergyMeasurement(meter="nvml"),
        "n_requests": 2,
        "input_tokens": 8,
        "output_tokens": 10,
        "duration_s": 2.0,
        "output_tokens_per_s": 5.0,
        "requests_per_s": 1.0,
    }
    fields.update(overrides)
    return ExperimentResult(**fields)


def make_unmetered_result(config: ExperimentConfig, **overrides: Any) -> ExperimentResult:
    """``make_result`` for a run measured without a meter: one request of one input and one output
    token in 1 s, energy unavailable (the ``null`` meter) — what a test-double executor writes."""
    fields: dict[str, Any] = {
        "energy": EnergyMeasurement(meter="null", available=False),
        "n_requests": 1,
        "input_tokens": 1,
        "output_tokens": 1,
        "duration_s": 1.0,
        "output_tokens_per_s": 1.0,
        "requests_per_s": 1.0,
    }
    fields.update(overrides)
    return make_result(config, **fields)


def study_file(
    directory: Path,
    sweep: dict[str, Any],
    n_cycles: int = 1,
    order: str = "sequential",
    name: str = "t",
    **base: object,
) -> Path:
    """``directory/study.yaml``: ``tiny_experiment(**base)`` swept over ``sweep``, ``n_cycles``
    cycles in ``order``, no gaps between configs or cycles."""
    data = {
        "name": name,
        "base": tiny_experiment(**base),
        "sweep": sweep,
        "execution": {
            "n_cycles": n_cycles,
            "cycle_order": order,
            "config_gap_seconds": 0,
            "cycle_gap_seconds": 0,
        },
    }
    return write(directory / "study.yaml", yaml.safe_dump(data))


def llem_env(user_config: Path, columns: int = 200, **extra: str) -> dict[str, str]:
    """The environment of an ``llem`` subprocess: this one's, with ``LLEM_CONFIG`` pointing at
    ``user_config``, a terminal ``columns`` wide (rich wraps at it) and ``extra`` variables."""
    return {**os.environ, "LLEM_CONFIG": str(user_config), "COLUMNS": str(columns), **extra}
