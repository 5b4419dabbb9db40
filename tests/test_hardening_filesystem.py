"""Filesystem faults on real filesystems (issue 13, item 3): a read-only results directory and a
tiny tmpfs that is full before the study starts or fills up while it runs.

The mounts need root (CI runs as root; chmod would not stop root from writing, a read-only mount
does). Elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llenergymeasure.results.io import atomic_write_text
from tests.builders import llem_env, study_file
from tests.helpers import user_config_file

LLEM = [sys.executable, "-m", "llenergymeasure"]
FS_EXIT = 74


def _mount_tmpfs(where: Path, options: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a test filesystem needs root (CI runs as root)")
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {res.stderr.strip()}")


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "ro"
    _mount_tmpfs(where, "size=1m,mode=0755")
    (where / "results").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
    try:
        yield where / "results"
    finally:
        _umount(where)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "tiny"
    _mount_tmpfs(where, "size=256k")
    try:
        yield where
    finally:
        _umount(where)


def _fill(fs: Path) -> Path:
    """Write a file until the filesystem has no byte left."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_read_only_results_dir_is_a_clear_error(
    tmp_path: Path, shared_model_cache: Path, read_only_dir: Path
) -> None:
    f = study_file(tmp_path, {"batch_size": [1]})
    res = subprocess.run(
        [*LLEM, "run", str(f), "--results-dir", str(read_only_dir), "--yes"],
        env=llem_env(user_config_file(tmp_path, shared_model_cache), 300),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode == FS_EXIT, out
    assert "Traceback" not in out
    assert str(read_only_dir) in out and "Read-only file system" in out
    assert "--results-dir" in out  # what to do
    assert list(read_only_dir.iterdir()) == []


def test_resume_in_a_read_only_study_dir_is_a_clear_error(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    """A study directory that became read-only (a mount remounted ro after an I/O error)."""
    env = llem_env(user_config_file(tmp_path, shared_model_cache), 300)
    where = tmp_path / "ro"
    _mount_tmpfs(where, "size=4m")
    try:
        f = study_file(tmp_path, {"batch_size": [1]})
        res = subprocess.run(
            [*LLEM, "run", str(f), "--results-dir", str(where), "--dry-run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        # a study directory as an interrupted study leaves it: study.yaml and a manifest
        from llenergymeasure.config.study import StudyConfig
        from llenergymeasure.study.runner import StudyOptions, StudyRunner

        sr = StudyRunner(
            StudyConfig.from_yaml(f),
            StudyOptions(results_dir=where),
            user_config_path=user_config_file(tmp_path, shared_model_cache),
            source_path=f,
        )
        d = where / "t_resume"
        d.mkdir()
        sr._start_manifest(d, sr.plan())
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        res = subprocess.run(
            [*LLEM, "run", "--resume", str(d)], env=env, capture_output=True, text=True, timeout=300
        )
        out = res.stdout + res.stderr
        assert res.returncode == FS_EXIT, out
        assert "Traceback" not in out and "Read-only file system" in out and str(d) in out
    finally:
        _umount(where)


def test_full_disk_before_the_study_leaves_no_directory_without_a_manifest(
    tmp_path: Path, shared_model_cache: Path, tiny_fs: Path
) -> None:
    results = tiny_fs / "results"
    results.mkdir()
    _fill(tiny_fs)
    f = study_file(tmp_path, {"batch_size": [1]})
    res = subprocess.run(
        [*LLEM, "run", str(f), "--results-dir", str(results), "--yes"],
        env=llem_env(user_config_file(tmp_path, shared_model_cache), 300),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode == FS_EXIT, out
    assert "Traceback" not in out
    assert "No space left on device" in out and "disk is full" in out
    assert str(results) in out
    assert list(results.iterdir()) == []  # the study directory it created is gone again


def test_disk_full_mid_study_stops_clearly_and_resumes_after_space_is_freed(
    tmp_path: Path, shared_model_cache: Path, tiny_fs: Path
) -> None:
    env = llem_env(user_config_file(tmp_path, shared_model_cache), 300)
    results = tiny_fs / "results"
    f = study_file(tmp_path, {"batch_size": [1, 2]})
    proc = subprocess.Popen(
        [*LLEM, "run", str(f), "--results-dir", str(results), "--yes"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # As soon as the first experiment runs, the disk fills up (another job's output, say).
    deadline = time.monotonic() + 240
    d = None
    while d is None and time.monotonic() < deadline:
        for m in results.glob("*/manifest.json"):
            try:
                if any(r["status"] == "running" for r in json.loads(m.read_text())["runs"]):
                    d = m.parent
            except ValueError:
                pass
        time.sleep(0.05)
    assert d is not None, "the study never started a run"
    filler = _fill(tiny_fs)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == FS_EXIT, out
    assert "Traceback" not in out
    assert "No space left on device" in out and "disk is full" in out
    assert f"llem run --resume {d}" in out.replace("\n", "")  # the study is resumable
    manifest = json.loads((d / "manifest.json").read_text())  # intact: atomic rewrites
    assert len(manifest["runs"]) == 2
    assert not list(d.glob("*.tmp")) and not list(d.glob(".*.tmp"))  # no temporary left

    filler.unlink()
    res = subprocess.run(
        [*LLEM, "run", "--resume", str(d)], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout + res.stderr
    after = json.loads((d / "manifest.json").read_text())
    assert [r["status"] for r in after["runs"]] == ["completed", "completed"]


def test_atomic_write_on_a_full_disk_names_the_file_and_leaves_no_temporary(
    tiny_fs: Path,
) -> None:
    _fill(tiny_fs)
    target = tiny_fs / "manifest.json"
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "x" * 100_000)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(target)
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["filler"]
