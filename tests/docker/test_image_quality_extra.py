"""Every backend image installs llenergymeasure with the ``[quality]`` extra (issue 28).

No Docker daemon: ``docker/install-llem.sh deps`` runs here with ``LLEM_PYTHON`` pointing at a
stand-in interpreter that records its arguments, for each Dockerfile's own default extra (and
for an extra given with ``build-image.sh --extra``), and the recorded ``pip install`` must name
the backend extra and ``quality``: a ``quality:`` section then works under ``--runner docker``.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


def _pip_target(tmp_path: Path, extra: str) -> str:
    """The requirement ``install-llem.sh deps /src EXTRA`` hands to ``pip install``."""
    log = tmp_path / "calls.log"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "LLEM_PYTHON": str(python), "LLEM_POST_UNINSTALL": ""}
    subprocess.run(
        ["sh", str(ROOT / "docker" / "install-llem.sh"), "deps", "/src", extra],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    installs = [line for line in log.read_text().splitlines() if line.startswith("-m pip install")]
    assert len(installs) == 1, installs
    return installs[0].split()[-1]


def _default_extra(dockerfile: Path) -> str:
    text = dockerfile.read_text()
    match = re.search(r"^ARG LLEM_EXTRA=(\S+)$", text, re.MULTILINE)
    assert match, f"{dockerfile.name} sets no default LLEM_EXTRA"
    assert 'install-llem.sh deps /opt/llenergymeasure "${LLEM_EXTRA}"' in text, dockerfile.name
    return match.group(1)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_each_image_installs_its_backend_extra_and_quality(
    dockerfile: Path, tmp_path: Path
) -> None:
    extra = _default_extra(dockerfile)
    assert _pip_target(tmp_path, extra) == f"/src[{extra},quality]"


@pytest.mark.parametrize(
    ("extra", "target"),
    [("vllm", "/src[vllm,quality]"), ("quality,vllm", "/src[quality,vllm]"), ("", "/src[quality]")],
)
def test_an_extra_given_at_build_time_keeps_quality_once(
    extra: str, target: str, tmp_path: Path
) -> None:
    assert _pip_target(tmp_path, extra) == target


def test_every_backend_has_an_image() -> None:
    assert {p.name for p in DOCKERFILES} >= {
        "pytorch.Dockerfile",
        "vllm.Dockerfile",
        "trtllm.Dockerfile",
    }
