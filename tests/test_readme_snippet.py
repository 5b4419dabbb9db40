"""Issue 29 item 1: the README's Python snippet, verbatim, as a new user runs it: as a script with no
``if __name__ == "__main__":`` guard, from stdin, and executed like a notebook cell. Each ends with
the printed figures and exactly one result folder (a child interpreter never re-runs the script)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import user_config_file

ROOT = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (snippet,) = [b for b in blocks if "run_experiment(" in b]
    return snippet


@pytest.mark.slow
@pytest.mark.parametrize("how", ["script", "stdin", "notebook-cell"])
def test_readme_snippet_runs_as_written(tmp_path: Path, shared_model_cache: Path, how: str) -> None:
    snippet = readme_snippet()
    assert "__main__" not in snippet  # the snippet a user copies has no guard
    (tmp_path / "snippet.py").write_text(snippet)
    uc = user_config_file(tmp_path, shared_model_cache)
    argv = {
        "script": [sys.executable, "snippet.py"],
        "stdin": [sys.executable, "-"],
        "notebook-cell": [
            sys.executable,
            "-c",
            "ns = {'__name__': '__main__'}\n"
            "exec(compile(open('snippet.py').read(), '<cell>', 'exec'), ns)",
        ],
    }[how]
    out = subprocess.run(
        argv,
        cwd=tmp_path,
        input=snippet if how == "stdin" else None,
        env={**os.environ, "LLEM_CONFIG": str(uc)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # energy_per_output_token_j (None: no meter on this machine), tokens/s, the meter's name
    last = out.stdout.strip().splitlines()[-1].split()
    assert len(last) == 3 and float(last[1]) > 0, out.stdout
    runs = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(runs) == 1 and runs[0].startswith("experiment_"), runs
