"""``llem results``: list, show, query, compare and leaderboard over the results archive.

Roots default to the user config's ``output.results_dir``; ``--root`` (repeatable) replaces it.
Errors (a missing root, an unknown study, SQL that DuckDB refuses) print one clear message and
exit 2. DuckDB and the archive modules are imported when a command runs, so ``llem --help`` stays
fast. What the commands print (tables, JSON, the show and compare views) is in
``results_views.py``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from llenergymeasure.cli.help_style import LlemCommand, LlemGroup
from llenergymeasure.cli.results_views import (
    console,
    json_default,
    plain_table,
    print_compare,
    print_json,
    print_run,
    print_study,
    run_data,
    study_data,
    table,
)
from llenergymeasure.errors import LLEMError

if TYPE_CHECKING:
    from llenergymeasure.results.archive.store import Archive

results_app = typer.Typer(
    help="Query, compare and export every study under your results roots (DuckDB).",
    no_args_is_help=True,
    cls=LlemGroup,
)
err_console = Console(stderr=True)

RootOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--root",
        "-r",
        metavar="DIR",
        help="a results root or study directory (repeatable; default: output.results_dir)",
    ),
]


def _fail(exc: LLEMError) -> None:
    err_console.print("[bold red]error:[/] " + escape(str(exc)), highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _open(roots: list[Path] | None) -> Archive:
    from llenergymeasure.config.user import load_user_config
    from llenergymeasure.results.archive.store import Archive

    cfg = load_user_config()
    chosen = list(roots) if roots else [cfg.output.resolved_results_dir()]
    if not roots and not chosen[0].exists():
        from llenergymeasure.results.archive.store import ArchiveError

        raise ArchiveError(missing_results_dir(cfg.output.results_dir, cfg.source_path))
    archive = Archive(chosen, cache_dir=cfg.output.resolved_model_cache_dir())
    for s in archive.skipped:
        err_console.print(f"[yellow]skipped[/] {escape(str(s.path))}: {escape(s.note)}")
    return archive


def missing_results_dir(results_dir: str, config_path: str | None) -> str:
    """Which folder was looked at, and why there: a relative ``output.results_dir`` is taken
    from the current folder, wherever the user config lives."""
    looked = Path(os.path.expanduser(results_dir)).absolute()
    source = f"output.results_dir {results_dir!r}" + (
        f" (user config {config_path})" if config_path else " (the default)"
    )
    relative = not Path(os.path.expanduser(results_dir)).is_absolute()
    return (
        f"no results folder at {looked}: {source}"
        + (", taken from the current folder" if relative else "")
        + "; run llem from the folder the study ran in, give --root DIR"
        + (", or set output.results_dir to an absolute path" if relative else "")
    )


@results_app.command("list", cls=LlemCommand)
def list_cmd(
    root: RootOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Studies under the roots: date, name, design hash, runs completed/failed, GPUs, backends."""
    try:
        archive = _open(root)
        cols, rows = archive.query(
            "SELECT started_at, name, design_hash, n_completed, n_failed, n_interrupted, n_pending, "
            "gpus, backends, source, study_dir FROM studies ORDER BY started_at, study_dir"
        )
    except LLEMError as exc:
        _fail(exc)
        return
    if as_json:
        sys.stdout.write(
            json.dumps([dict(zip(cols, r, strict=True)) for r in rows], indent=2) + "\n"
        )
        return
    if not rows:
        console.print("no studies under " + ", ".join(str(r) for r in archive.roots))
        return
    headers = (
        "date",
        "name",
        "design",
        "done",
        "failed",
        "interrupted",
        "GPUs",
        "backends",
        "read from",
        "directory",
    )
    lines: list[tuple[str, ...]] = [
        (
            str(started)[:16].replace("T", " "),
            str(name),
            str(design)[:12] or "—",
            f"{done}" + (f" (+{pending} pending)" if pending else ""),
            str(failed),
            str(interrupted),
            str(gpus or "—"),
            str(backends or "—"),
            "— (no result yet)" if source == "none" else str(source),
            str(path),
        )
        for started, name, design, done, failed, interrupted, pending, gpus, backends, source, path in rows
    ]
    # plain aligned text: a rich table of a thousand studies takes seconds to lay out
    sys.stdout.write(plain_table(headers, lines))
    sys.stdout.write(f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'}\n")


@results_app.command(cls=LlemCommand)
def show(
    target: Annotated[
        str, typer.Argument(help="a study (directory or name) or a run (folder or id)")
    ],
    root: RootOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="the same figures as JSON on stdout")
    ] = False,
) -> None:
    """One study's or one run's headline figures, failures and warnings."""
    try:
        from llenergymeasure.results.archive.compare import resolve

        archive = _open(root if root else _roots_for(target))
        found = resolve(archive, target)
        if found.kind == "run":
            data = run_data(archive, found.study_dir, str(found.run_id))
            if as_json:
                print_json(data)
            else:
                print_run(data)
        else:
            data = study_data(archive, found.study_dir)
            if as_json:
                print_json(data)
            else:
                print_study(data)
    except LLEMError as exc:
        _fail(exc)
    for path, why in archive.unreadable_parquet.items():  # read from the runs' JSON instead
        err_console.print(
            f"[yellow]skipped[/] {escape(path)}: {escape(why)}; read from the runs' result.json"
        )


def _roots_for(target: str) -> list[Path] | None:
    """A path given as the target is its own root (no need for the user config's)."""
    p = Path(target).expanduser()
    if p.exists():
        from llenergymeasure.results.archive.store import is_study_dir

        return [p] if is_study_dir(p) else [p.parent] if is_study_dir(p.parent) else None
    return None


@results_app.command(cls=LlemCommand)
def query(
    sql: Annotated[
        str, typer.Argument(help="SQL over the views runs, configs, studies, run_status")
    ],
    root: RootOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print every row as JSON on stdout (no --limit)")
    ] = False,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", metavar="FILE", help="write the result as CSV")
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json-file", "-o", metavar="FILE", help="write the result as JSON"),
    ] = None,
    parquet_out: Annotated[
        Path | None,
        typer.Option("--parquet", metavar="FILE", help="write the result as Parquet"),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", help="rows printed (files get all)")
    ] = 50,
    stray: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
) -> None:
    """SQL over the archive (views in docs/results.md), printed, as JSON, or written to files."""
    if stray:
        hint = (
            "--json prints JSON on stdout; write a file with --json-file FILE (or -o FILE)"
            if as_json
            else "give the SQL as one quoted argument"
        )
        err_console.print(
            "[bold red]error:[/] "
            + escape(f"unexpected argument(s) {' '.join(stray)!r} after the SQL: {hint}"),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    try:
        archive = _open(root)
        outputs = {"csv": csv_out, "json": json_out, "parquet": parquet_out}
        wrote = False
        for fmt_name, target in outputs.items():
            if target is not None:
                path = archive.export(sql, target, fmt_name)
                console.print(f"{fmt_name}: [bold]{escape(str(path))}[/]")
                wrote = True
        if wrote:
            return
        cols, rows = archive.query(sql)
    except LLEMError as exc:
        _fail(exc)
        return
    if as_json:
        print_json([dict(zip(cols, r, strict=True)) for r in rows])
        return
    console.print(table(cols, rows[:limit]))
    if len(rows) > limit:
        console.print(
            f"{len(rows) - limit} more row(s): --limit N, --json, or --csv/--json-file/--parquet FILE"
        )


@results_app.command(cls=LlemCommand)
def compare(
    a: Annotated[
        str, typer.Argument(help="study (dir or name), run, or config hash ([STUDY#]HASH)")
    ],
    b: Annotated[str, typer.Argument(help="the other one")],
    root: RootOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Two studies or configurations side by side: B - A per metric with its 95 % CI.

    Every difference of environment (GPU, driver, engine versions, power limit) is flagged.
    """
    try:
        from llenergymeasure.results.archive.compare import compare as do_compare
        from llenergymeasure.results.archive.compare import resolve

        roots = root or _merge(_roots_for(a), _roots_for(b))
        archive = _open(roots)
        result = do_compare(archive, resolve(archive, a), resolve(archive, b))
    except LLEMError as exc:
        _fail(exc)
        return
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, default=json_default) + "\n")
        return
    print_compare(result)


def _merge(*roots: list[Path] | None) -> list[Path] | None:
    if all(r is not None for r in roots):
        return [p for r in roots for p in (r or [])]
    return None


@results_app.command(cls=LlemCommand)
def leaderboard(
    out_dir: Annotated[Path, typer.Argument(help="folder for leaderboard_<model>_<gpu>.json/.csv")],
    root: RootOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="also print the leaderboards as JSON on stdout")
    ] = False,
) -> None:
    """Per (model, GPU): Pareto fronts of J/token against throughput and against latency.

    Each point is traceable to its study, config hash and run directories.
    """
    try:
        from llenergymeasure.results.leaderboard import board_summary, leaderboards, write_boards

        archive = _open(root)
        boards = leaderboards(archive)
        paths = write_boards(boards, out_dir)
    except LLEMError as exc:
        _fail(exc)
        return
    if as_json:
        print_json({"written": [str(p) for p in paths], "leaderboards": boards})
        return
    if not boards:
        console.print("0 entries: no configuration in the archive; nothing written")
    for board in boards:
        console.print(escape(board_summary(board)), highlight=False, soft_wrap=True)
    for p in paths:
        console.print(escape(str(p)), highlight=False, soft_wrap=True)
