from __future__ import annotations

from pathlib import Path

import pytest

from llenergymeasure import ExperimentConfig, StudyConfig
from llenergymeasure.config.validate import load_config_file
from llenergymeasure.errors import ConfigError
from tests.helpers import write


def test_sweep_is_cartesian_over_base() -> None:
    s = StudyConfig(
        base={"model": "synthetic/tiny-llama", "precision": "fp32"},
        sweep={"batch_size": [1, 2, 4], "max_output_tokens": [8, 16]},
    )
    exps = s.expand()
    assert len(exps) == 6
    assert {(e.batch_size, e.max_output_tokens) for e in exps} == {
        (b, m) for b in (1, 2, 4) for m in (8, 16)
    }
    assert all(e.precision == "fp32" for e in exps)


def test_dotted_keys_reach_sections_and_nested_fields() -> None:
    s = StudyConfig(
        base={"model": "m", "backend": "vllm", "vllm": {"enforce_eager": True}},
        sweep={"vllm.max_num_seqs": [64, 256], "dataset.input_tokens": [32, 64]},
    )
    exps = s.expand()
    assert len(exps) == 4
    assert {(e.vllm.max_num_seqs, e.dataset.input_tokens) for e in exps if e.vllm} == {
        (64, 32),
        (64, 64),
        (256, 32),
        (256, 64),
    }
    assert all(e.vllm is not None and e.vllm.enforce_eager for e in exps)


def test_experiments_crossed_with_sweep_and_backend_axes_apply_to_their_backend() -> None:
    s = StudyConfig(
        base={"model": "m"},
        experiments=[{"backend": "pytorch"}, {"backend": "vllm"}],
        sweep={"batch_size": [1, 8], "vllm.max_num_seqs": [4, 16]},
    )
    exps = s.expand()
    pt = [e for e in exps if e.backend == "pytorch"]
    vl = [e for e in exps if e.backend == "vllm"]
    assert len(pt) == 2 and len(vl) == 4
    assert s.backends == ["pytorch", "vllm"]


def test_invalid_points_are_reported_not_dropped() -> None:
    s = StudyConfig(
        base={"model": "m"}, sweep={"batch_size": [1, 0], "precision": ["fp16", "int2"]}
    )
    rep = s.expand_report()
    assert len(rep.experiments) == 1
    assert len(rep.invalid) == 3
    text = "\n".join(p.describe() for p in rep.invalid)
    assert (
        "batch_size=0" in text
        and "precision='int2'" in text
        and "greater than or equal to 1" in text
    )


def test_all_points_invalid_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no valid experiment"):
        load_config_dict({"base": {"model": "m"}, "sweep": {"batch_size": [0, -1]}})


def load_config_dict(data: dict) -> StudyConfig:
    return StudyConfig.from_dict(data)


def test_sweep_value_must_be_a_list() -> None:
    with pytest.raises(ConfigError, match=r"sweep.batch_size must be a list.*\[8\]"):
        load_config_dict({"base": {"model": "m"}, "sweep": {"batch_size": 8}})


def test_duplicates_are_run_once_and_reported() -> None:
    s = StudyConfig(experiments=[{"model": "m"}, {"model": "m", "name": "same"}])
    rep = s.expand_report()
    assert len(rep.experiments) == 1 and len(rep.duplicates) == 1


def test_design_hash_excludes_execution_and_order() -> None:
    a = StudyConfig(base={"model": "m"}, sweep={"batch_size": [1, 2]}, execution={"n_cycles": 3})
    b = StudyConfig(
        base={"model": "m"},
        sweep={"batch_size": [2, 1]},
        execution={"n_cycles": 10, "cycle_order": "shuffled"},
    )
    c = StudyConfig(base={"model": "m"}, sweep={"batch_size": [1, 4]})
    assert a.study_design_hash == b.study_design_hash
    assert a.study_design_hash != c.study_design_hash


def test_execution_validation(tmp_path: Path) -> None:
    f = write(
        tmp_path / "s.yaml", "base: {model: m}\nexecution:\n  n_cycles: 0\n  cycle_order: random\n"
    )
    with pytest.raises(ConfigError) as exc:
        StudyConfig.from_yaml(f)
    text = str(exc.value)
    assert f"{f}:3: execution.n_cycles" in text
    assert (
        f"{f}:4: execution.cycle_order" in text
        and "'sequential', 'interleaved' or 'shuffled'" in text
    )


def test_study_file_unknown_top_level_field(tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", "base: {model: m}\nsweeps: {batch_size: [1]}\n")
    with pytest.raises(ConfigError, match=r"sweeps: unknown field \(did you mean `sweep`\?\)"):
        StudyConfig.from_yaml(f)


def test_llem_tells_experiment_from_study(tmp_path: Path) -> None:
    e = write(tmp_path / "e.yaml", "model: m\n")
    s = write(tmp_path / "s.yaml", "base: {model: m}\nsweep: {batch_size: [1, 2]}\n")
    assert isinstance(load_config_file(e), ExperimentConfig)
    assert isinstance(load_config_file(s), StudyConfig)
    with pytest.raises(ConfigError, match="study file"):
        ExperimentConfig.from_yaml(s)
    one = StudyConfig.from_yaml(e)
    assert len(one.expand()) == 1 and one.execution.n_cycles == 1


def test_runner_inside_study_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", "base:\n  model: m\n  runner: docker\n")
    with pytest.raises(ConfigError, match=r"s.yaml:3: base.runner"):
        StudyConfig.from_yaml(f)
