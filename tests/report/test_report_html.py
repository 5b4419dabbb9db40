"""report.html: self-contained, complete, and regenerated from a study directory."""

from __future__ import annotations

import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_builders import FIXTURES, build_study_dir, copy_fixture_study

from llenergymeasure.cli.report import report_command
from llenergymeasure.report import generate_report
from llenergymeasure.results.loading import StudyDirError, load_study_dir
from llenergymeasure.results.models import StudyResult

pytest.importorskip("matplotlib")
pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

POWER_RUN = "002_c1_pytorch_6adba687"


class _Refs(HTMLParser):
    """Collects every src/href value and every tag name."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action") and value is not None:
                self.refs.append((tag, name, value))


def assert_self_contained(text: str, no_urls_in_text: bool = True) -> _Refs:
    parser = _Refs()
    parser.feed(text)
    for tag, attr, value in parser.refs:
        v = value.strip().lower()
        assert not v.startswith(("http://", "https://", "//", "ftp:", "file:")), (
            tag,
            attr,
            value[:80],
        )
        if attr == "src":
            assert v.startswith("data:image/png;base64,"), (tag, value[:80])
        if attr == "href":
            assert v.startswith("#"), (tag, value)
    assert not parser.tags & {"script", "link", "iframe", "object", "embed", "base"}
    for css in re.findall(r"<style>(.*?)</style>", text, flags=re.S):
        assert "url(" not in css and "@import" not in css
    if no_urls_in_text:
        assert "http://" not in text and "https://" not in text
    return parser


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StudyResult, str]:
    study_dir, study = build_study_dir(tmp_path_factory.mktemp("synthetic"))
    path = generate_report(study, study_dir)
    return study_dir, study, path.read_text()


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The real-harness study, with the synthetic power series given to one run and a config name
    that needs escaping, regenerated through ``llem report``'s function."""
    study_dir = copy_fixture_study(tmp_path_factory.mktemp("fixture"))
    shutil.copy(FIXTURES / "synthetic_timeseries.csv", study_dir / POWER_RUN / "timeseries.csv")
    data = json.loads((study_dir / "study_result.json").read_text())
    for run in data["runs"]:
        if run["experiment_id"] == POWER_RUN:
            run["timeseries_file"] = "timeseries.csv"
    for summary in data["summaries"]:
        summary["label"] = summary["label"] + ' <img src="http://x"> & co'
    (study_dir / "study_result.json").write_text(json.dumps(data))
    (study_dir / "figures").mkdir()
    (study_dir / "figures" / "power_old_run.png").write_bytes(b"stale")
    path = report_command(study_dir)
    assert path == study_dir / "report.html"
    return study_dir, path.read_text()


def test_synthetic_report_is_self_contained(
    synthetic_report: tuple[Path, StudyResult, str],
) -> None:
    parser = assert_self_contained(synthetic_report[2])
    assert sum(1 for tag, _, _ in parser.refs if tag == "img") == 4 + 7  # axes, fronts, power


def test_synthetic_report_shows_every_part(synthetic_report: tuple[Path, StudyResult, str]) -> None:
    study_dir, study, text = synthetic_report
    for anchor in (
        "summary",
        "axes",
        "pareto",
        "power",
        "runs",
        "warnings",
        "failures",
        "environment",
    ):
        assert f'id="{anchor}"' in text
    # The summary table: mean ± CI half-width of energy per token, for each config.
    s = study.summaries[0].metrics["energy_per_output_token_j"]
    assert re.search(r"3\.57\d* ± 1\.8 <span class=\"muted\">\(n=2\)", text), s
    # Each swept axis has its figure, and both fronts are drawn.
    for name in ("axis_backend", "axis_batch_size", "pareto_throughput", "pareto_latency"):
        assert (study_dir / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert "Front: C4" in text
    # Every run's power series.
    for r in study.runs:
        assert (study_dir / "figures" / f"power_{r.experiment_id}.png").exists()
    # Every validity warning, every failure, the environment.
    for r in study.runs:
        for w in r.warnings:
            assert html.escape(w.message) in text
    assert "CUDA out of memory (synthetic failure)" in text and "OutOfMemoryError" in text
    assert "NVIDIA H200" in text and "580.65.06" in text
    assert "1 run(s) failed" in text


def test_report_of_the_real_fixture(fixture_report: tuple[Path, str]) -> None:
    study_dir, text = fixture_report
    assert_self_contained(text, no_urls_in_text=False)  # a config label holds an escaped URL
    assert "energy measurement disabled (energy_backend: none)" in text
    assert "No config has an energy figure" in text
    assert "energy_unavailable" in text
    assert (study_dir / "figures" / "axis_batch_size.png").exists()
    assert not (study_dir / "figures" / "pareto_throughput.png").exists()
    # The run given the (synthetic) power series is plotted; the others say why they are not.
    assert (study_dir / "figures" / f"power_{POWER_RUN}.png").exists()
    assert "meter null wrote no time series" in text
    # Stale figures of an earlier generation are removed.
    assert not (study_dir / "figures" / "power_old_run.png").exists()
    # The exports are regenerated with the report.
    assert (study_dir / "results.parquet").exists() and (study_dir / "summary.csv").exists()


def test_user_text_is_escaped(fixture_report: tuple[Path, str]) -> None:
    _, text = fixture_report
    assert '<img src="http://x">' not in text
    assert "&lt;img src=&quot;http://x&quot;&gt; &amp; co" in text


def test_report_command_refuses_a_non_study_dir(tmp_path: Path) -> None:
    with pytest.raises(StudyDirError, match="not a study directory"):
        report_command(tmp_path)


def test_interrupted_study_says_how_to_resume(tmp_path: Path) -> None:
    study_dir, _ = build_study_dir(tmp_path, write_aggregate=False, pending_runs=6, fail_run=None)
    study = load_study_dir(study_dir)
    assert study.interrupted and len(study.runs) == 2
    text = generate_report(study, study_dir).read_text()
    assert_self_contained(text)
    assert f"llem run --resume {study_dir}" in text
