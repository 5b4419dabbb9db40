"""docker/build-image.sh: per-engine-version tags, and the pinned base images the docs name.

``--dry-run`` prints what would be built without a Docker daemon, so these run everywhere.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docker" / "build-image.sh"


def _dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args, "--dry-run"], capture_output=True, text=True, timeout=30
    )


def _pinned(backend: str) -> str:
    text = (ROOT / "docker" / f"{backend}.Dockerfile").read_text()
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert match, backend
    return match.group(1)


@pytest.mark.parametrize(
    ("backend", "version", "base", "tag"),
    [
        ("vllm", "0.11.0", "vllm/vllm-openai:v0.11.0", "llenergymeasure:vllm-0.11.0"),
        ("vllm", "v0.10.2", "vllm/vllm-openai:v0.10.2", "llenergymeasure:vllm-0.10.2"),
        (
            "trtllm",
            "1.1.0",
            "nvcr.io/nvidia/tensorrt-llm/release:1.1.0",
            "llenergymeasure:trtllm-1.1.0",
        ),
    ],
)
def test_engine_version_gives_base_and_tag_side_by_side(
    backend: str, version: str, base: str, tag: str
) -> None:
    done = _dry_run(backend, "--engine-version", version)
    assert done.returncode == 0, done.stderr
    assert f"tag: {tag}\n" in done.stdout and f"base: {base}\n" in done.stdout
    assert f"--build-arg BASE_IMAGE={base}" in done.stdout
    assert f"org.llenergymeasure.engine-version={version.lstrip('v')}" in done.stdout


def test_default_build_uses_the_dockerfile_pin_and_plain_tag() -> None:
    done = _dry_run("vllm")
    assert done.returncode == 0, done.stderr
    assert "tag: llenergymeasure:vllm\n" in done.stdout
    assert f"base: {_pinned('vllm')}\n" in done.stdout and "--build-arg" not in done.stdout


def test_explicit_tag_and_base_win_over_engine_version() -> None:
    done = _dry_run("vllm", "--engine-version", "0.9.2", "--tag", "me/llem:old", "--base", "x/y:z")
    assert done.returncode == 0, done.stderr
    assert "tag: me/llem:old\n" in done.stdout and "base: x/y:z\n" in done.stdout


def test_engine_version_refusals() -> None:
    pytorch = _dry_run("pytorch", "--engine-version", "2.8.0")
    assert pytorch.returncode == 2 and "give --base IMAGE" in pytorch.stderr
    bad = _dry_run("vllm", "--engine-version", "latest; rm -rf /")
    assert bad.returncode == 2 and "is not a release number" in bad.stderr


def test_docs_name_each_pinned_base_image() -> None:
    runners = (ROOT / "docs" / "runners.md").read_text()
    for backend in ("pytorch", "vllm", "trtllm"):
        assert f"`{_pinned(backend)}`" in runners, backend
