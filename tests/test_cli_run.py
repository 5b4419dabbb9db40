"""`llem run` end to end through the CLI: verbosity from the user config, the ui.prompt question."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.builders import llem_env
from tests.helpers import tiny_experiment, user_config_file, write


def _study(tmp_path: Path) -> Path:
    data = {
        "name": "cli",
        "base": tiny_experiment(),
        "sweep": {"batch_size": [1, 2]},
        "execution": {"n_cycles": 1},
    }
    return write(tmp_path / "s.yaml", yaml.safe_dump(data))


def test_quiet_and_verbose(tmp_path: Path, shared_model_cache: Path) -> None:
    study = _study(tmp_path)
    quiet = user_config_file(tmp_path / "q", shared_model_cache, extra="ui: {verbosity: quiet}\n")
    out = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "run", str(study)],
        env=llem_env(quiet),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "✓" not in out.stdout and "mean ± 95 % CI" in out.stdout
    verbose = user_config_file(
        tmp_path / "v", shared_model_cache, extra="ui: {verbosity: verbose}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "run", str(study)],
        env=llem_env(verbose),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "→ run 1/2 cycle 1: batch_size=1" in out.stdout and "✓" in out.stdout


def test_prompt_asks_at_a_terminal_and_no_means_nothing_runs(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    study = _study(tmp_path)
    uc = user_config_file(tmp_path, shared_model_cache)  # ui.prompt defaults to true
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llenergymeasure", "run", str(study)],
        env=llem_env(uc),
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    os.write(master, b"n\n")
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the terminal closed: the process exited
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    out = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode(errors="replace"))
    assert proc.returncode == 0, out
    assert "run 2 experiments" in out and "nothing run" in out
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())
