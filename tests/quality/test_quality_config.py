"""The ``quality:`` section: validation, paths next to the config file, and config hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.quality import QualityConfig, requests_problem
from llenergymeasure.errors import ConfigError
from tests.quality.conftest import GEN_TASK, MC_TASK, PPL_TASK


def _config(**quality: object) -> ExperimentConfig:
    return ExperimentConfig(model="synthetic/tiny-llama", quality=quality or None)


def test_hash_unchanged_without_quality_and_changed_with_it() -> None:
    plain = ExperimentConfig(model="synthetic/tiny-llama")
    assert "quality" not in plain.hashable_dict()
    with_quality = _config(tasks=[str(MC_TASK)])
    assert with_quality.hashable_dict()["quality"]["tasks"] == [str(MC_TASK)]
    assert with_quality.config_hash != plain.config_hash
    assert _config(tasks=[str(MC_TASK)], limit=5).config_hash != with_quality.config_hash


def test_pinned_config_hash_untouched() -> None:
    """The pinned tiny-llama hash (tests/test_config_experiment.py) holds with the new field."""
    from llenergymeasure.results.models import SCHEMA_VERSION
    from tests.test_config_experiment import PINNED_TINY_LLAMA_CONFIG_HASH

    got = ExperimentConfig(model="synthetic/tiny-llama").config_hash
    assert got == PINNED_TINY_LLAMA_CONFIG_HASH[SCHEMA_VERSION]


@pytest.mark.parametrize(("limit", "expected"), [(5, 5), (5.0, 5), (0.25, 0.25), (None, None)])
def test_limit_items_or_fraction(limit: object, expected: object) -> None:
    assert QualityConfig(tasks=["x"], limit=limit).limit == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"tasks": []}, ["tasks"]),
        ({"tasks": ["a", "a"]}, ["'a'", "twice"]),
        ({"tasks": ["x"], "limit": 0}, ["quality.limit", "0", "at least 1"]),
        ({"tasks": ["x"], "limit": 1.5}, ["quality.limit", "1.5", "fraction"]),
        ({"tasks": ["x"], "correct_metric": "bleu"}, ["'bleu'", "not an accuracy-type", "acc"]),
        ({"tasks": ["x"], "correct_metric": "word_perplexity"}, ["word_perplexity", "exact_match"]),
        ({"tasks": ["/nowhere/task.yaml"]}, ["/nowhere/task.yaml", "does not exist"]),
        ({"tasks": ["x"], "batch_size": 0}, ["batch_size"]),
    ],
)
def test_bad_quality_input_names_field_and_value(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        QualityConfig(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_generation_only_backend_refuses_loglikelihood_tasks_naming_them() -> None:
    from llenergymeasure.backends.registry import names

    generation_only = [
        n
        for n in names()
        if "loglikelihood"
        not in ExperimentConfig(model="synthetic/tiny-llama", backend=n)
        .backend_section()
        .quality_requests()
    ]
    assert generation_only, "some registered backend scores generation tasks only"
    backend = generation_only[0]
    with pytest.raises(ValidationError) as info:
        ExperimentConfig(
            model="synthetic/tiny-llama",
            backend=backend,
            quality={"tasks": [str(MC_TASK), str(GEN_TASK), str(PPL_TASK)]},
        )
    text = str(info.value)
    assert f"loglikelihood (needed by {MC_TASK})" in text
    assert f"loglikelihood_rolling (needed by {PPL_TASK})" in text
    assert str(GEN_TASK) not in text.split("supports")[0]
    ExperimentConfig(
        model="synthetic/tiny-llama", backend=backend, quality={"tasks": [str(GEN_TASK)]}
    )


def test_requests_problem_lists_each_missing_request() -> None:
    assert requests_problem({"t": "generate_until"}, frozenset({"generate_until"}), "E") is None
    text = requests_problem({"a": "multiple_choice", "b": "loglikelihood"}, frozenset(), "E")
    assert text is not None and "E cannot compute loglikelihood (needed by a, b)" in text


def test_serving_workload_refuses_quality() -> None:
    with pytest.raises(ValidationError, match="quality: runs after an offline measured window"):
        ExperimentConfig(
            model="synthetic/tiny-llama",
            workload="serving",
            load={"concurrency": 2, "duration_s": 5},
            quality={"tasks": [str(GEN_TASK)]},
        )


def test_task_yaml_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    (folder / "tasks").mkdir(parents=True)
    (folder / "tasks" / "t.yaml").write_text(GEN_TASK.read_text())
    config_file = folder / "e.yaml"
    config_file.write_text(
        "model: synthetic/tiny-llama\nquality:\n  tasks: [tasks/t.yaml, hellaswag]\n  limit: 4\n"
    )
    config = ExperimentConfig.from_yaml(config_file)
    assert config.quality is not None
    assert config.quality.tasks == [str(folder / "tasks" / "t.yaml"), "hellaswag"]


def test_missing_task_yaml_in_a_file_is_a_config_error(tmp_path: Path) -> None:
    config_file = tmp_path / "e.yaml"
    config_file.write_text("model: synthetic/tiny-llama\nquality: {tasks: [gone.yaml]}\n")
    with pytest.raises(ConfigError, match=r"gone\.yaml does not exist"):
        ExperimentConfig.from_yaml(config_file)


def test_example_quality_study_loads_with_its_local_tasks() -> None:
    from llenergymeasure.config.quality import local_task_output_type
    from llenergymeasure.config.validate import load_config_file

    root = Path(__file__).resolve().parents[2] / "examples"
    study = load_config_file(root / "quality-study.yaml")
    experiments = study.expand()  # type: ignore[union-attr]
    assert len(experiments) == 2  # two configs, each run in 2 cycles
    quality = experiments[0].quality
    assert quality is not None and quality.limit == 8
    assert quality.tasks == [
        str(root / "quality-tasks" / "local_mc.yaml"),
        str(root / "quality-tasks" / "local_gen.yaml"),
    ]
    assert [local_task_output_type(t) for t in quality.tasks] == [
        "multiple_choice",
        "generate_until",
    ]
