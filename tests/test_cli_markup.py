"""Text that rich renders is printed as text: ``[zeus]`` in a message is never read as markup.

Each test renders real CLI output (the typer app, or the printing functions on a recording console)
and looks for the bracketed text that rich markup would have swallowed.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from llenergymeasure.cli import app
from llenergymeasure.cli.run_summary import print_experiment_summary, print_study_summary
from tests.helpers import write

runner = CliRunner()
FIXTURE_STUDY = Path(__file__).resolve().parent / "report" / "fixtures" / "study"


def _flat(text: str) -> str:
    """Output without line breaks, so a wrapped table cell still matches."""
    return text.replace("\n", "")


def test_config_prints_the_extra_name_and_bracketed_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # zeus made unimportable for this test, whatever the environment holds
    monkeypatch.setitem(sys.modules, "zeus", None)
    results = tmp_path / "results[v2]"
    cfg = write(tmp_path / "c.yaml", f"output: {{results_dir: '{results}'}}\n")
    res = runner.invoke(
        app, ["config", "--no-probe"], env={"COLUMNS": "300", "LLEM_CONFIG": str(cfg)}
    )
    assert res.exit_code == 0, res.output
    out = res.output
    assert "pip install 'llenergymeasure[zeus]'" in out, out
    assert str(results) in _flat(out)


def test_report_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # the import of the report command fails as it does without the [report] extra
    monkeypatch.setitem(sys.modules, "llenergymeasure.cli.report", None)
    res = runner.invoke(app, ["report", str(FIXTURE_STUDY)], env={"COLUMNS": "300"})
    assert res.exit_code == 1
    assert "needs the [report] extra" in res.output, res.output
    assert "pip install 'llenergymeasure[report]'" in res.output


def test_report_path_with_brackets_is_printed_whole(tmp_path: Path) -> None:
    study = tmp_path / "study[run-2]"
    shutil.copytree(FIXTURE_STUDY, study)
    res = runner.invoke(app, ["report", str(study)], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert str(study / "report.html") in _flat(res.output)


def test_dry_run_prints_bracketed_model_name(tmp_path: Path) -> None:
    f = write(
        tmp_path / "s.yaml",
        "base: {model: 'acme/llm[beta]'}\nsweep: {batch_size: [1, 2]}\n",
    )
    res = runner.invoke(app, ["run", str(f), "--dry-run"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "acme/llm[beta]" in res.output, res.output


def _recording_console() -> Console:
    return Console(record=True, width=300, file=io.StringIO())


def test_experiment_summary_prints_unavailable_reason_with_extra() -> None:
    from llenergymeasure.results.loading import load_study_dir

    study = load_study_dir(FIXTURE_STUDY)
    run = study.runs[0]
    why = "Zeus is not installed (pip install 'llenergymeasure[zeus]')"
    energy = run.energy.model_copy(update={"available": False, "unavailable_reason": why})
    result = run.model_copy(update={"energy": energy})
    console = _recording_console()
    print_experiment_summary(console, result, None)
    assert why in console.export_text()


def test_study_summary_prints_bracketed_directory(tmp_path: Path) -> None:
    from llenergymeasure.results.loading import load_study_dir

    study_dir = tmp_path / "out[final]"
    shutil.copytree(FIXTURE_STUDY, study_dir)
    study = load_study_dir(study_dir)
    console = _recording_console()
    print_study_summary(console, study)
    assert f"study directory: {study_dir}" in console.export_text()
