"""Study tables label each experiment with only the fields that differ between experiments."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from llenergymeasure.cli import app
from llenergymeasure.config.labels import distinguish, varying_fields
from llenergymeasure.config.study import StudyConfig
from tests.helpers import write

MIXED = """\
base: {model: synthetic/tiny-llama}
experiments:
  - {backend: pytorch}
  - {backend: vllm, vllm: {max_num_seqs: 4}}
  - {backend: vllm, vllm: {max_num_seqs: 8}}
"""


def test_mixed_backends_show_only_differing_fields(tmp_path: Path) -> None:
    study = StudyConfig.from_yaml(write(tmp_path / "s.yaml", MIXED))
    configs = study.expand()
    fields = varying_fields(configs)
    # the PyTorch experiment lacks vllm.*, the vLLM ones lack pytorch.*: neither is a difference
    assert fields == ["backend", "vllm.max_num_seqs"]
    labels = [distinguish(c, fields) for c in configs]
    assert labels == [
        "backend=pytorch",
        "backend=vllm, vllm.max_num_seqs=4",
        "backend=vllm, vllm.max_num_seqs=8",
    ]


def test_dry_run_table_of_a_mixed_study(tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", MIXED)
    res = CliRunner().invoke(
        app, ["run", str(f), "--dry-run", "--runner", "docker"], env={"COLUMNS": "300"}
    )
    # The table is the subject here. The dry run also checks the docker images the plan names and
    # exits 1 when one is not built on this machine (tested in tests/test_first_hour.py), so
    # either outcome is right, depending on what this machine has built.
    assert res.exit_code in (0, 1), res.output
    if res.exit_code == 1:
        assert "would be refused" in res.output, res.output
    assert "pytorch." not in res.output and "=None" not in res.output, res.output
    assert "backend=vllm, vllm.max_num_seqs=8" in res.output


def test_dry_run_tables_wrap_on_a_narrow_terminal(tmp_path: Path) -> None:
    """Issue 29 item 9: on an 80-column terminal no cell is cut with an ellipsis."""
    study = """\
base: {model: synthetic/tiny-llama, pytorch: {attn_implementation: sdpa}}
experiments:
  - {precision: fp32, pytorch: {static_cache: false, attn_implementation: eager}}
  - {precision: bf16, pytorch: {static_cache: true, attn_implementation: sdpa}}
"""
    f = write(tmp_path / "s.yaml", study)
    res = CliRunner().invoke(app, ["run", str(f), "--dry-run"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "…" not in res.output, res.output
    flat = res.output.replace("\n", "").replace("│", "").replace(" ", "")
    assert "pytorch.attn_implementation=eager" in flat, res.output
