"""CLI habits: --json for `llem run` and `llem config`, -q/-v over ui.verbosity, shell completion,
and `llem init` (writes a valid commented user config, asks, never overwrites silently)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from llenergymeasure.backends import registry
from llenergymeasure.config.user import load_user_config
from tests.helpers import tiny_experiment, user_config_file, write


def llem(
    *args: str, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llenergymeasure", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_verbose_flag_overrides_quiet_user_config_and_json_summary_of_a_study(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    study = write(
        tmp_path / "s.yaml",
        yaml.safe_dump(
            {
                "name": "habits",
                "base": tiny_experiment(),
                "sweep": {"batch_size": [1, 2]},
                "execution": {"n_cycles": 1},
            }
        ),
    )
    uc = user_config_file(tmp_path, shared_model_cache, extra="ui: {verbosity: quiet}\n")
    out = llem("-v", "run", "--json", "--yes", str(study), env={"LLEM_CONFIG": str(uc)})
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)  # stdout is the JSON document alone
    assert data["kind"] == "study" and data["n_completed"] == 2 and data["n_failed"] == 0
    assert sorted(c["config_label"] for c in data["configs"]) == [
        "tiny-llama/pytorch/bs1",
        "tiny-llama/pytorch/bs2",
    ]
    assert data["configs"][0]["metrics"]["output_tokens_per_s"]["mean"] > 0
    assert Path(data["study_dir"]).is_dir()
    assert "→ run 1/2 cycle 1" in out.stderr  # -v won over ui.verbosity: quiet


def test_quiet_flag_and_json_summary_of_an_experiment(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    exp = write(tmp_path / "e.yaml", yaml.safe_dump(tiny_experiment()))
    uc = user_config_file(tmp_path, shared_model_cache, extra="ui: {verbosity: verbose}\n")
    out = llem("-q", "run", str(exp), env={"LLEM_CONFIG": str(uc)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "→ run" not in out.stdout and "✓" not in out.stdout  # -q won over verbose
    assert "energy per output token" in out.stdout
    out = llem("run", "--json", str(exp), env={"LLEM_CONFIG": str(uc)})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["kind"] == "experiment" and data["energy_meter"] == "null"
    assert data["output_tokens"] == 16 and Path(data["result_file"]).exists()
    assert json.loads(Path(data["result_file"]).read_text())["config_hash"] == data["config_hash"]


def test_quiet_and_verbose_together_is_bad_input() -> None:
    out = llem("-q", "-v", "config", "--no-probe")
    assert out.returncode == 2 and "not both" in out.stderr


def test_config_json(tmp_path: Path, shared_model_cache: Path) -> None:
    uc = user_config_file(tmp_path, shared_model_cache)
    out = llem("config", "--json", "--no-probe", env={"LLEM_CONFIG": str(uc)})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["user_config"] == {"path": str(uc), "exists": True}
    assert data["values"]["measurement"]["energy_backend"] == "none"
    assert set(data["runners"]) == set(registry.names())
    assert data["environment"]["python_version"]
    assert {m["meter"] for m in data["energy_meters"]} >= {"nvml", "zeus", "rapl"}


def test_shell_completion_is_offered_and_completes_subcommands() -> None:
    llem_exe = str(Path(sys.executable).parent / "llem")
    out = llem("--help")
    assert "--install-completion" in out.stdout
    env = {**os.environ, "SHELL": "/bin/bash"}
    # typer finds the shell from the process tree (shellingham): start llem from bash (a second
    # command keeps bash from exec-ing llem in its place)
    out = subprocess.run(
        ["bash", "-c", f"'{llem_exe}' --show-completion; exit $?"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "complete -o default -F _llem_completion llem" in out.stdout
    env.update(_LLEM_COMPLETE="complete_bash", COMP_WORDS="llem results ", COMP_CWORD="2")
    out = subprocess.run([llem_exe], capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.split() == ["list", "show", "query", "compare", "leaderboard"]


def test_init_writes_a_valid_commented_config_and_never_overwrites_silently(tmp_path: Path) -> None:
    target = tmp_path / "cfg" / "config.yaml"
    out = llem("init", "--path", str(target))  # no terminal, no --yes: asks nobody, writes nothing
    assert out.returncode == 2 and "--yes" in out.stderr and not target.exists()
    out = llem("init", "--yes", "--path", str(target))
    assert out.returncode == 0, out.stderr
    text = target.read_text()
    assert "# Detected:" in text and "energy_backend:" in text and "#   meter nvml: " in text
    cfg = load_user_config(target)  # valid as a UserConfig
    assert cfg.runners.get("pytorch") == "local"  # torch is importable in this environment
    out = llem("init", "--yes", "--path", str(target))
    assert out.returncode == 2 and "exists" in out.stderr and target.read_text() == text
    target.write_text("# mine\n")
    out = llem("init", "--yes", "--force", "--path", str(target))
    assert out.returncode == 0 and target.read_text() != "# mine\n"
