"""How a run's end is read back and recorded, by every executor path (one at a time, side by
side, SLURM): ``runners.outcome.read_back`` and ``ManifestStore.end``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.runners.outcome import read_back
from llenergymeasure.study.manifest import Manifest, ManifestRun, ManifestStore
from tests.core.test_core_resume import result_json


def test_a_completed_run_comes_back_with_its_result(tmp_path: Path) -> None:
    run = SimpleNamespace(
        run_id="001_c1_pytorch_x", config=ExperimentConfig(model="synthetic/tiny-llama")
    )
    path = tmp_path / "result.json"
    path.write_text(result_json(run))  # type: ignore[arg-type]
    outcome = RunOutcome(status="completed", run_dir=tmp_path, result_path=path, extra={"k": 1})
    back, result = read_back(outcome)
    assert back is outcome
    assert result is not None and result.experiment_id == "001_c1_pytorch_x"


def test_an_unreadable_result_fails_the_run_in_phase_result_with_the_advice(
    tmp_path: Path,
) -> None:
    path = tmp_path / "result.json"
    path.write_text('{"schema_version": ')
    outcome = RunOutcome(status="completed", run_dir=tmp_path, result_path=path, extra={"k": 1})
    back, result = read_back(outcome, advice=" (same version on the nodes?)")
    assert result is None
    assert (back.status, back.phase, back.run_dir) == ("failed", "result", tmp_path)
    assert back.error_type == "ValidationError" and back.extra == {"k": 1}
    assert back.message is not None
    assert back.message.startswith(
        "result.json could not be read back (same version on the nodes?): "
    )
    path.unlink()  # gone between the run's end and the read
    back, result = read_back(outcome)
    assert result is None and back.error_type == "FileNotFoundError"
    assert back.message is not None and back.message.startswith(
        "result.json could not be read back: "
    )


def test_runs_that_did_not_complete_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text("not json")  # would fail if it were read
    for status in ("failed", "timeout", "interrupted"):
        outcome = RunOutcome(status=status, run_dir=tmp_path, result_path=path, message="m")  # type: ignore[arg-type]
        assert read_back(outcome) == (outcome, None)
    no_file = RunOutcome(status="completed", run_dir=tmp_path)
    assert read_back(no_file) == (no_file, None)


def _store(tmp_path: Path) -> ManifestStore:
    run = ManifestRun(
        run_id="001_c1_pytorch_x", index=1, config_hash="h", config_index=0, cycle=1,
        backend="pytorch",
    )  # fmt: skip
    store = ManifestStore(
        tmp_path, Manifest(study_name="s", study_design_hash="d", n_cycles=1, runs=[run])
    )
    store.transition("001_c1_pytorch_x", "running", run_dir="001_c1_pytorch_x")
    return store


def test_end_records_status_phase_and_the_first_4000_characters_of_a_failure(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    long = "x" * 3999 + "yz"
    entry = store.end(
        "001_c1_pytorch_x",
        RunOutcome(status="failed", run_dir=tmp_path, message=long, phase="measure"),
        node="n1",
    )
    assert (entry.status, entry.phase, entry.node) == ("failed", "measure", "n1")
    assert entry.message == "x" * 3999 + "y"
    assert entry.ended_at is not None and entry.history[-1]["status"] == "failed"
    assert ManifestStore.load(tmp_path).get("001_c1_pytorch_x").message == entry.message


def test_end_of_a_completed_run_keeps_no_message_and_a_failure_without_one_records_empty(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    entry = store.end(
        "001_c1_pytorch_x",
        RunOutcome(status="completed", run_dir=tmp_path, message="ignored", phase="done"),
    )
    assert (entry.status, entry.message, entry.phase) == ("completed", None, "done")
    store.transition("001_c1_pytorch_x", "running")
    entry = store.end("001_c1_pytorch_x", RunOutcome(status="timeout", run_dir=tmp_path))
    assert (entry.status, entry.message, entry.phase) == ("timeout", "", None)
