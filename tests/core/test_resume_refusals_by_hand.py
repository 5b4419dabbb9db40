"""`llem run --resume DIR` refuses a directory it cannot resume, and says exactly why, with the
directory, both design hashes and what to do instead; a study read from the directory is the one
whose design the manifest recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llenergymeasure import StudyConfig
from llenergymeasure.config.user import UserConfig
from llenergymeasure.errors import ConfigError
from llenergymeasure.study.manifest import Manifest
from llenergymeasure.study.runner import StudyOptions, StudyRunner


def _study(sizes: list[int]) -> StudyConfig:
    return StudyConfig(
        name="r",
        base={"model": "synthetic/tiny-llama"},
        sweep={"batch_size": sizes},
        execution={"n_cycles": 1, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
    )


def _study_dir(tmp_path: Path, study: StudyConfig, n_cycles: int = 3) -> Path:
    d = tmp_path / "r_20261202-010000"
    d.mkdir()
    (d / "study.yaml").write_text(yaml.safe_dump(study.model_dump(mode="json")))
    (d / "manifest.json").write_text(
        Manifest(
            study_name=study.name, study_design_hash=study.study_design_hash, n_cycles=n_cycles
        ).model_dump_json()
    )
    return d


def test_no_manifest_names_the_directory_and_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        StudyRunner(_study([1]), resume_dir=tmp_path, user_config=UserConfig())
    assert str(err.value) == (
        f"--resume {tmp_path}: no manifest.json there; give the directory of a study that llem "
        "started (it holds manifest.json and study.yaml)"
    )


def test_a_changed_study_names_both_design_hashes(tmp_path: Path) -> None:
    original = _study([1, 2, 4])
    d = _study_dir(tmp_path, original)
    changed = _study([1, 2])
    with pytest.raises(ConfigError) as err:
        StudyRunner(changed, resume_dir=d, user_config=UserConfig())
    assert str(err.value) == (
        f"--resume {d}: the study file no longer matches this study (design hash "
        f"{changed.study_design_hash[:12]} vs {original.study_design_hash[:12]} in the manifest): "
        "its experiments changed. Resume with the original study file, or start a new study"
    )


def test_the_study_file_in_the_directory_is_used_when_none_is_given(tmp_path: Path) -> None:
    original = _study([1, 2, 4])
    d = _study_dir(tmp_path, original, n_cycles=3)
    runner = StudyRunner(None, StudyOptions(no_gaps=True), resume_dir=d, user_config=UserConfig())
    assert runner.study.study_design_hash == original.study_design_hash
    assert runner.resume_dir == d
    # the manifest's cycle count wins over the study file's (1): 3 configs x 3 cycles
    plan = runner.plan()
    assert len(plan) == 9 and sorted({r.cycle for r in plan}) == [1, 2, 3]
    # the same study given explicitly resumes too
    given = StudyRunner(
        _study([1, 2, 4]), StudyOptions(no_gaps=True), resume_dir=d, user_config=UserConfig()
    )
    assert len(given.plan()) == 9
