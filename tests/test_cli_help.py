"""Issue 29 item 10: the CLI reads like one tool. Walks every command's help and checks the rules:
no Python-type placeholders (``<bool>``, ``<list[Path]>``), usage lines without braces, ``--json``
a flag that prints to stdout wherever it exists (and present on the commands that show data),
each command's one-line summary on one line, ``-q/-v`` before or after ``run``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from llenergymeasure.cli import app
from llenergymeasure.cli.help_style import LlemCommand, LlemGroup
from tests.helpers import tiny_experiment, write

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
PYTHON_TYPES = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\]|[a-z_]+ range)>")
#: commands that show data: each takes --json and prints JSON on stdout
WITH_JSON = {
    ("run",),
    ("config",),
    ("status",),
    ("results", "list"),
    ("results", "show"),
    ("results", "query"),
    ("results", "compare"),
    ("results", "leaderboard"),
}


def _walk(cmd, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(get_command(app)))


def test_every_command_is_walked() -> None:
    paths = {p for p, _ in COMMANDS}
    assert paths >= WITH_JSON
    assert len(paths) >= 12


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "llem")
def test_help_follows_the_cli_conventions(path: tuple[str, ...]) -> None:
    cmd = dict(COMMANDS)[path]
    assert isinstance(cmd, (LlemCommand, LlemGroup)), f"{path}: give it cls=LlemCommand"
    res = CliRunner().invoke(app, [*path, "--help"], env=ENV)
    assert res.exit_code == 0, res.output
    text = res.output
    assert not PYTHON_TYPES.findall(text), f"llem {' '.join(path)}: {PYTHON_TYPES.findall(text)}"
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    # arguments in upper case in the usage line: llem status [OPTIONS] STUDY_DIR
    words = usage.split("Usage:")[1].split()
    assert all(w.isupper() or w.startswith(("llem", "[")) or w in path for w in words), usage
    for sub in getattr(cmd, "commands", {}).values():
        first = (sub.help or "").strip().split("\n\n")[0]
        assert "\n" not in first, f"{sub.name}: the summary breaks mid-sentence: {first!r}"
    options = {o: p for p in cmd.params for o in getattr(p, "opts", [])}
    if "--json" in options:
        assert options["--json"].is_flag, f"llem {' '.join(path)} --json must be a flag"
    if path in WITH_JSON:
        assert "--json" in options, f"llem {' '.join(path)} has no --json"


def test_query_json_prints_rows_and_the_old_file_use_is_explained(tmp_path: Path) -> None:
    root = tmp_path / "results"
    root.mkdir()
    runner = CliRunner()
    res = runner.invoke(
        app, ["results", "query", "SELECT 1 AS one", "--json", "-r", str(root)], env=ENV
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == [{"one": 1}]
    res = runner.invoke(
        app, ["results", "query", "SELECT 1", "--json", "out.json", "-r", str(root)], env=ENV
    )
    assert res.exit_code == 2
    assert "--json-file" in res.output and "out.json" in res.output
    res = runner.invoke(
        app,
        ["results", "query", "SELECT 1 AS one", "-o", str(tmp_path / "o.json"), "-r", str(root)],
        env=ENV,
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o.json").read_text()) == [{"one": 1}]


def test_quiet_and_verbose_after_the_subcommand(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import llenergymeasure.cli.run_cmd as run_cmd

    seen: list[str | None] = []

    def fake_run_command(args: run_cmd.RunArgs, console: object) -> int:
        seen.append(args.verbosity)
        return 0

    monkeypatch.setattr(run_cmd, "run_command", fake_run_command)
    f = write(tmp_path / "e.yaml", json.dumps(tiny_experiment()))
    runner = CliRunner()
    for args, want in (
        (["run", str(f), "-q"], "quiet"),
        (["-q", "run", str(f)], "quiet"),
        (["run", str(f), "--verbose"], "verbose"),
        (["run", str(f)], None),
    ):
        res = runner.invoke(app, args, env=ENV)
        assert res.exit_code == 0, (args, res.output)
        assert seen[-1] == want, args
    res = runner.invoke(app, ["-q", "run", str(f), "-v"], env=ENV)
    assert res.exit_code == 2 and "not both" in res.output
