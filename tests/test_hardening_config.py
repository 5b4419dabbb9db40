"""Configuration and input hardening (issue 13, items 5, 6, 7 and 16), through the real CLI.

Sweep size counted before expansion, YAML alias bombs and oversized files, explicit experiments
that are invalid, sweep axes that apply to nothing, local paths (checked by --dry-run, resolved
against the YAML file), and the hints for a misplaced `model:` and for `max_new_tokens`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llenergymeasure import ExperimentConfig, StudyConfig
from llenergymeasure.config.validate import load_config_file
from llenergymeasure.errors import ConfigError
from tests.helpers import tiny_experiment, user_config_file, write

LLEM = [sys.executable, "-m", "llenergymeasure"]


def _llem(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout=120):
    return subprocess.run(
        [*LLEM, *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "300", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _study(tmp_path: Path, data: dict, name: str = "study.yaml") -> Path:
    data = {"name": "t", **data}
    return write(tmp_path / name, yaml.safe_dump(data, sort_keys=False))


# -- item 5: size --------------------------------------------------------------------------------


def test_a_million_point_sweep_is_refused_before_expansion(tmp_path: Path) -> None:
    sweep = {
        "batch_size": list(range(1, 11)),
        "max_output_tokens": list(range(1, 11)),
        "max_input_tokens": list(range(1, 11)),
        "seed": list(range(10)),
        "n": list(range(1, 11)),
        "dataset.input_tokens": list(range(1, 11)),
    }
    f = _study(tmp_path, {"base": tiny_experiment(), "sweep": sweep})
    # expanding a million points takes minutes; the refusal must come without expanding them
    res = _llem("run", str(f), "--dry-run", timeout=60)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "3,000,000 runs" in out and "1,000,000 sweep points" in out
    assert "batch_size (10)" in out and "dataset.input_tokens (10)" in out
    assert "execution.max_runs" in out
    assert "Traceback" not in out


def test_max_runs_is_settable_and_counts_cycles(tmp_path: Path) -> None:
    data = {
        "base": tiny_experiment(),
        "sweep": {"batch_size": [1, 2, 3], "seed": [1, 2, 3]},
        "execution": {"n_cycles": 3, "max_runs": 26},
    }
    with pytest.raises(ConfigError, match="27 runs"):
        load_config_file(_study(tmp_path, data))
    data["execution"]["max_runs"] = 27
    assert len(load_config_file(_study(tmp_path, data)).expand()) == 9  # type: ignore[union-attr]


def test_cycles_override_is_counted_too(tmp_path: Path, shared_model_cache: Path) -> None:
    data = {
        "base": tiny_experiment(),
        "sweep": {"batch_size": [1, 2]},
        "execution": {"n_cycles": 1, "max_runs": 10},
    }
    f = _study(tmp_path, data)
    uc = user_config_file(tmp_path, shared_model_cache)
    res = _llem("run", str(f), "--dry-run", "--cycles", "6", env={"LLEM_CONFIG": str(uc)})
    assert res.returncode == 2, res.stdout + res.stderr
    assert "12 runs" in res.stderr and "execution.max_runs" in res.stderr


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    lines.append("model: synthetic/tiny-llama")
    lines.append("name: *a9")
    f = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    res = _llem("run", str(f), "--dry-run", timeout=60)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "anchors and aliases" in out and "Traceback" not in out


def test_an_oversized_file_is_refused(tmp_path: Path) -> None:
    f = write(
        tmp_path / "huge.yaml",
        "model: synthetic/tiny-llama\n" + "# padding\n" * 500_000,
    )
    res = _llem("run", str(f), "--dry-run")
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "too large" in out and str(f) in out


# -- item 6: silent shrinkage --------------------------------------------------------------------


def test_an_invalid_explicit_experiment_is_an_error_naming_item_and_field(tmp_path: Path) -> None:
    f = _study(
        tmp_path,
        {
            "experiments": [
                tiny_experiment(),
                tiny_experiment(precision="fp9"),
            ]
        },
    )
    res = _llem("run", str(f), "--dry-run")
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "experiments[1]" in out and "precision" in out and "fp9" in out
    assert "experiments[0]" not in out


def test_invalid_sweep_combinations_are_still_skipped_with_a_notice(tmp_path: Path) -> None:
    # precision fp32 with a quantized... keep it simple: a batch size the model accepts and one
    # it does not (batch_size must be >= 1)
    f = _study(
        tmp_path,
        {"base": tiny_experiment(), "sweep": {"batch_size": [1, 0]}},
    )
    res = _llem("run", str(f), "--dry-run")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "invalid sweep point, skipped" in out and "batch_size" in out


def test_a_sweep_axis_that_applies_to_no_experiment_is_an_error(tmp_path: Path) -> None:
    f = _study(
        tmp_path,
        {"base": tiny_experiment(), "sweep": {"batch_size": [1, 2], "vllm.max_num_seqs": [8, 16]}},
    )
    res = _llem("run", str(f), "--dry-run")
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "sweep.vllm.max_num_seqs" in out and "applies to no experiment" in out
    assert "pytorch" in out


def test_a_section_axis_used_by_one_backend_is_fine(tmp_path: Path) -> None:
    study = StudyConfig(
        name="t",
        experiments=[
            tiny_experiment(),
            {**tiny_experiment(), "backend": "vllm", "precision": "bf16"},
        ],
        sweep={"vllm.max_num_seqs": [8, 16]},
    )
    assert len(study.expand()) == 3


# -- item 7: local paths ---------------------------------------------------------------------------


def test_dry_run_notices_a_missing_local_model_directory(tmp_path: Path) -> None:
    for model in ("./models/nope", str(tmp_path / "absent"), "~/surely-not-a-model-dir-llem"):
        f = write(tmp_path / "exp.yaml", yaml.safe_dump({**tiny_experiment(), "model": model}))
        res = _llem("run", str(f), "--dry-run")
        out = res.stdout + res.stderr
        assert res.returncode == 2, out
        assert "model:" in out and "does not exist" in out


def test_dry_run_notices_a_missing_jsonl_dataset(tmp_path: Path) -> None:
    f = write(
        tmp_path / "exp.yaml",
        yaml.safe_dump({**tiny_experiment(), "dataset": {"source": "data/prompts.jsonl"}}),
    )
    res = _llem("run", str(f), "--dry-run")
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "dataset.source" in out and str(tmp_path / "data" / "prompts.jsonl") in out
    assert "does not exist" in out


def _prompts(path: Path) -> Path:
    return write(path, "".join(json.dumps({"prompt": f"hello {i}"}) + "\n" for i in range(8)))


def test_relative_paths_resolve_against_the_yaml_file_not_the_cwd(tmp_path: Path) -> None:
    project = tmp_path / "project"
    _prompts(project / "data" / "prompts.jsonl")
    (project / "models" / "m").mkdir(parents=True)
    exp = write(
        project / "configs" / "exp.yaml",
        yaml.safe_dump(
            {
                **tiny_experiment(),
                "model": "../models/m",
                "dataset": {"source": "../data/prompts.jsonl"},
            }
        ),
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = Path.cwd()
    try:
        os.chdir(elsewhere)
        cfg = load_config_file(Path("..") / "project" / "configs" / "exp.yaml")
    finally:
        os.chdir(cwd)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.model == str(project / "models" / "m")
    assert cfg.dataset.source == str(project / "data" / "prompts.jsonl")
    # a hub id and the synthetic source are names, not paths
    plain = load_config_file(write(project / "configs" / "hub.yaml", "model: org/name\n"))
    assert isinstance(plain, ExperimentConfig) and plain.model == "org/name"
    assert plain.dataset.source == "synthetic"
    # in a study: base, experiments and the model/dataset axes
    study = load_config_file(
        write(
            project / "configs" / "study.yaml",
            yaml.safe_dump(
                {
                    "base": {**tiny_experiment(), "dataset": {"source": "../data/prompts.jsonl"}},
                    "sweep": {"model": ["synthetic/tiny-llama", "../models/m"]},
                }
            ),
        )
    )
    assert isinstance(study, StudyConfig)
    assert {c.model for c in study.expand()} == {"synthetic/tiny-llama", str(project / "models/m")}
    assert {c.dataset.source for c in study.expand()} == {str(project / "data/prompts.jsonl")}
    assert exp.exists()


def test_local_runner_reads_a_relative_dataset_from_another_cwd_and_resume_agrees(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    project = tmp_path / "project"
    _prompts(project / "data" / "prompts.jsonl")
    f = write(
        project / "study.yaml",
        yaml.safe_dump(
            {
                "name": "rel",
                "base": {**tiny_experiment(n=8), "dataset": {"source": "data/prompts.jsonl"}},
                "sweep": {"batch_size": [1]},
                "execution": {"n_cycles": 1, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
            }
        ),
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    uc = user_config_file(tmp_path, shared_model_cache)
    res = _llem("run", str(f), cwd=elsewhere, env={"LLEM_CONFIG": str(uc)}, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    (d,) = (tmp_path / "results").glob("rel_*")
    (result,) = d.glob("*/result.json")
    data = json.loads(result.read_text())
    assert data["config"]["dataset"]["source"] == str(project / "data" / "prompts.jsonl")
    assert data["n_requests"] == 8
    # the study directory's copy names the same files (its paths are absolute), so a resume
    # from anywhere finds the same study
    copy = yaml.safe_load((d / "study.yaml").read_text())
    assert copy["base"]["dataset"]["source"] == str(project / "data" / "prompts.jsonl")
    res = _llem("run", "--resume", str(d), cwd=tmp_path, env={"LLEM_CONFIG": str(uc)})
    assert res.returncode == 0, res.stdout + res.stderr


# -- item 16: hints ----------------------------------------------------------------------------------


def test_top_level_model_beside_sweep_hints_at_base(tmp_path: Path) -> None:
    f = _study(
        tmp_path,
        {"model": "synthetic/tiny-llama", "sweep": {"batch_size": [1, 2]}},
    )
    with pytest.raises(ConfigError) as info:
        load_config_file(f)
    text = str(info.value)
    assert "model" in text and "under `base:`" in text


def test_max_new_tokens_suggests_max_output_tokens(tmp_path: Path) -> None:
    f = write(
        tmp_path / "exp.yaml",
        "model: synthetic/tiny-llama\nmax_new_tokens: 32\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config_file(f)
    assert "did you mean `max_output_tokens`?" in str(info.value)
    assert "did you mean `max_input_tokens`" not in str(info.value)
