"""``study/manifest.read_manifest`` by hand (issue 30): every way manifest.json can be damaged is
a ``DamagedManifest`` naming the file, the damage and what to do (exit 2); another schema major
version is a ``StudyDirError`` saying which llenergymeasure wrote it; never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llenergymeasure._version import __version__
from llenergymeasure.results.loading import StudyDirError
from llenergymeasure.results.models import SCHEMA_VERSION
from llenergymeasure.study.manifest import DamagedManifest, Manifest, read_manifest


def _good() -> dict:
    return json.loads(
        Manifest(study_name="s", study_design_hash="h" * 64, n_cycles=1).model_dump_json()
    )


def _write(d: Path, raw: bytes) -> Path:
    path = d / "manifest.json"
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "the file is empty"),
        (b"  \n", "the file is empty"),
        (b"\xff\xfe\x00", None),  # not UTF-8: replaced, then not JSON (no UnicodeDecodeError)
        (b"[1, 2]", "a field has the wrong type or is missing: "),
        (b'"text"', "a field has the wrong type or is missing: "),
        (b'{"study_name": 3}', "a field has the wrong type or is missing: "),
    ],
)
def test_a_damaged_manifest_names_the_file_the_damage_and_what_to_do(
    tmp_path: Path, raw: bytes, problem: str | None
) -> None:
    path = _write(tmp_path, raw)
    with pytest.raises(DamagedManifest) as caught:
        read_manifest(tmp_path)
    exc = caught.value
    assert exc.path == path
    if problem is not None:
        assert exc.problem.startswith(problem)
    assert str(exc) == (
        f"{path} is damaged: {exc.problem}. Restore it from a backup, or resume with "
        f"`llem run --resume {tmp_path}`, which rebuilds it from study.yaml and the run "
        "folders (the damaged file is kept beside it)"
    )
    assert exc.exit_code == 2


def test_a_manifest_cut_short_says_so(tmp_path: Path) -> None:
    text = json.dumps(_good())
    _write(tmp_path, text[: len(text) // 2].encode())
    with pytest.raises(DamagedManifest) as caught:
        read_manifest(tmp_path)
    assert "cut short" in caught.value.problem


@pytest.mark.parametrize("version", ["9.0", "0.1", "2"])
def test_another_schema_major_version_names_both_versions(tmp_path: Path, version: str) -> None:
    if version.split(".")[0] == SCHEMA_VERSION.split(".")[0]:
        pytest.skip("same major version as this llenergymeasure")
    data = {**_good(), "schema_version": version}
    path = _write(tmp_path, json.dumps(data).encode())
    with pytest.raises(StudyDirError) as caught:
        read_manifest(tmp_path)
    assert not isinstance(caught.value, DamagedManifest)
    assert str(caught.value) == (
        f"{path}: schema_version {version!r} is not this llenergymeasure's "
        f"({SCHEMA_VERSION}, version {__version__}): resume the study with the llenergymeasure "
        "version that wrote it, or start it again with `llem run STUDY.yaml`"
    )


@pytest.mark.parametrize("rest", ["99", "99.1"])  # only the part before the first dot counts
def test_the_same_major_version_with_another_minor_is_read(tmp_path: Path, rest: str) -> None:
    major = SCHEMA_VERSION.split(".", 1)[0]
    data = {**_good(), "schema_version": f"{major}.{rest}"}
    _write(tmp_path, json.dumps(data).encode())
    manifest = read_manifest(tmp_path)
    assert manifest.study_name == "s" and manifest.schema_version == f"{major}.{rest}"


def test_a_schema_version_that_is_not_text_is_a_damaged_field(tmp_path: Path) -> None:
    data = {**_good(), "schema_version": 9}
    _write(tmp_path, json.dumps(data).encode())
    with pytest.raises(DamagedManifest) as caught:
        read_manifest(tmp_path)
    assert "schema_version" in caught.value.problem


def test_a_good_manifest_is_read(tmp_path: Path) -> None:
    _write(tmp_path, json.dumps(_good()).encode())
    assert read_manifest(tmp_path).study_design_hash == "h" * 64
