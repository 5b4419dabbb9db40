"""Relative dataset paths under the docker runner (issue 13, item 7), against a real daemon.

A path in a YAML file is relative to that file; a path in a config built in Python is relative to
the current directory. Either way the container reads the same file the local runner would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llenergymeasure import run_experiment
from tests.docker.docker_helpers import tiny_experiment

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _prompts(path: Path, n: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": f"hello number {i}"}) + "\n" for i in range(n)))
    return path


def test_relative_dataset_in_a_yaml_file_run_from_elsewhere(
    pytorch_image: str, docker_user_config: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    prompts = _prompts(project / "data" / "prompts.jsonl")
    exp = project / "configs" / "exp.yaml"
    exp.parent.mkdir(parents=True)
    exp.write_text(
        yaml.safe_dump(
            tiny_experiment(n=6, dataset={"source": "../data/prompts.jsonl", "input_tokens": 16})
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "llenergymeasure",
            "run",
            str(exp),
            "--runner",
            f"docker:{pytorch_image}",
        ],
        cwd=elsewhere,
        env={**os.environ, "LLEM_CONFIG": str(docker_user_config), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    [result] = list((tmp_path / "results").rglob("result.json"))
    data = json.loads(result.read_text())
    assert data["runner"]["kind"] == "docker"
    assert data["config"]["dataset"]["source"] == str(prompts)
    assert data["n_requests"] == 6


def test_relative_dataset_in_a_python_config_is_relative_to_the_cwd(
    pytorch_image: str,
    docker_user_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = tmp_path / "project"
    _prompts(project / "data" / "prompts.jsonl", n=5)
    monkeypatch.chdir(project)
    result = run_experiment(
        tiny_experiment(n=5, dataset={"source": "data/prompts.jsonl", "input_tokens": 16}),
        runner=f"docker:{pytorch_image}",
        results_dir=tmp_path / "results",
    )
    assert result.runner.kind == "docker"
    assert result.config.dataset.source == "data/prompts.jsonl"  # the config as given
    assert result.n_requests == 5
