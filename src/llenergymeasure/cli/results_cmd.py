"""``llem results``: list, show, query, compare and leaderboard over the results archive.

Roots default to the user config's ``output.results_dir``; ``--root`` (repeatable) replaces it.
Errors (a missing root, an unknown study, SQL that DuckDB refuses) print one clear message and
exit 2. DuckDB and the archive modules are imported when a command runs, so ``llem --help`` stays
fast.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.cli.help_style import LlemCommand, LlemGroup
from llenergymeasure.errors import LLEMError
from llenergymeasure.results.layout import RESULT_FILE

if TYPE_CHECKING:
    from llenergymeasure.results.archive.store import Archive

results_app = typer.Typer(
    help="Query, compare and export every study under your results roots (DuckDB).",
    no_args_is_help=True,
    cls=LlemGroup,
)
console = Console()
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


def fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        return f"{value:.{digits}g}"
    return str(value)


def _table(cols: list[str], rows: list[tuple], title: str | None = None) -> Table:
    t = Table(title=title)
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*(escape(fmt(v)) for v in r))
    return t


def _json_default(value: Any) -> Any:
    return str(value)


def _print_json(data: Any) -> None:
    """JSON on stdout, nothing else there (messages go to stderr)."""
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


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


def plain_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell (the last one not padded), one line per row."""
    widths = [max([len(h)] + [len(r[k]) for r in rows]) for k, h in enumerate(headers)]
    out = []
    for cells in (headers, *rows):
        out.append(
            "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths, strict=False))
            + "  "
            + cells[-1]
        )
    return "\n".join(out) + "\n"


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
            data = _run_data(archive, found.study_dir, str(found.run_id))
            if as_json:
                _print_json(data)
            else:
                _print_run(data)
        else:
            data = _study_data(archive, found.study_dir)
            if as_json:
                _print_json(data)
            else:
                _print_study(data)
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


_CONFIG_COLS = (
    "config_label, n_runs, n_invalid, n_failed, energy_per_output_token_j_mean, "
    "energy_per_output_token_j_ci95_half_width, output_tokens_per_s_mean, "
    "output_tokens_per_s_ci95_half_width, ttft_p50_ms_mean, itl_mean_ms_mean, config_hash"
)


def _study_data(archive: Archive, study_dir: str) -> dict[str, Any]:
    """What ``results show STUDY`` prints, as one mapping (``--json`` prints it as is)."""
    (study,) = archive.records("SELECT * FROM studies WHERE study_dir = $d", {"d": study_dir})
    configs = archive.records(
        f'SELECT {_CONFIG_COLS} FROM configs WHERE "study.dir" = $d ORDER BY config_label',
        {"d": study_dir},
    )
    unfinished = archive.records(
        "SELECT run_id, status, phase, message, run_dir FROM run_status WHERE study_dir = $d "
        "AND status IN ('failed', 'timeout', 'interrupted') ORDER BY run_id",
        {"d": study_dir},
    )
    invalid = archive.records(
        'SELECT run_id, failed_gates FROM runs WHERE "study.dir" = $d AND valid IS FALSE '
        "ORDER BY run_id",
        {"d": study_dir},
    )
    warnings = archive.records(
        "SELECT code, count(*) AS n_runs FROM (SELECT unnest(string_split(warning_codes, ',')) "
        'AS code FROM runs WHERE "study.dir" = $d AND warning_codes IS NOT NULL) GROUP BY code '
        "ORDER BY code",
        {"d": study_dir},
    )
    return {
        "study": study,
        "configs": configs,
        "unfinished_runs": unfinished,
        "invalid_runs": invalid,
        "warnings": warnings,
    }


def _pm(mean: Any, half: Any) -> str:
    return fmt(mean) + (f" ± {fmt(half, 2)}" if half is not None else "")


def _print_study(data: dict[str, Any]) -> None:
    study = data["study"]
    study_dir = study["study_dir"]
    console.print(f"study [bold]{escape(study['name'])}[/]  {escape(study_dir)}")
    console.print(
        f"design hash {study['design_hash'] or '—'}; {study['started_at']} .. {study['updated_at']}; "
        f"{study['n_completed']} completed, {study['n_failed']} failed, "
        f"{study['n_interrupted']} interrupted, {study['n_pending']} pending; "
        f"GPUs: {escape(study['gpus'] or 'none seen')}; "
        + ("no result yet" if study["source"] == "none" else f"read from {study['source']}")
    )
    if study["note"]:
        console.print(f"[yellow]note[/] {escape(study['note'])}")
    t = Table(title="configurations: mean ± 95 % CI half-width over the valid cycles")
    headers = ("config", "runs", "invalid", "failed", "J/out-token", "tok/s", "TTFT p50 ms")
    for c in (*headers, "ITL ms", "hash"):
        t.add_column(c, overflow="fold")
    for c in data["configs"]:
        t.add_row(
            escape(str(c["config_label"])),
            str(c["n_runs"]),
            str(c["n_invalid"]),
            str(c["n_failed"]),
            _pm(
                c["energy_per_output_token_j_mean"], c["energy_per_output_token_j_ci95_half_width"]
            ),
            _pm(c["output_tokens_per_s_mean"], c["output_tokens_per_s_ci95_half_width"]),
            fmt(c["ttft_p50_ms_mean"]),
            fmt(c["itl_mean_ms_mean"]),
            str(c["config_hash"])[:8],
        )
    console.print(t)
    for r in data["unfinished_runs"]:
        where = f" in {r['phase']}" if r["phase"] else ""
        console.print(
            f"[red]{r['status']}[/] "
            + escape(f"{r['run_id']}{where}: {r['message'] or ''}  [{r['run_dir']}]")
        )
    for r in data["invalid_runs"]:
        console.print(
            "[red]invalid[/] "
            + escape(
                f"{r['run_id']}: failed {r['failed_gates'] or 'a validity gate'}; "
                "left out of the means"
            )
        )
    for w in data["warnings"]:
        console.print(f"[yellow]warning[/] {escape(w['code'])} in {w['n_runs']} run(s)")


def _run_data(archive: Archive, study_dir: str, run_id: str) -> dict[str, Any]:
    """What ``results show RUN`` prints, as one mapping (``--json`` prints it as is)."""
    rows = archive.records(
        'SELECT * FROM runs WHERE "study.dir" = $d AND run_id = $r', {"d": study_dir, "r": run_id}
    )
    if not rows:
        status = archive.records(
            "SELECT * FROM run_status WHERE study_dir = $d AND run_id = $r",
            {"d": study_dir, "r": run_id},
        )
        if not status:
            from llenergymeasure.results.archive.store import ArchiveError

            raise ArchiveError(f"run {run_id!r} is not in {study_dir}")
        return {"study_dir": study_dir, "run_id": run_id, "status": status[0], "run": None}
    r = rows[0]
    result_file = Path(str(r["run_dir"])) / RESULT_FILE if r["run_dir"] else None
    try:
        data = json.loads(result_file.read_text()) if result_file else {}
        warnings = {(w["code"], w["message"]) for w in data.get("warnings", [])}
        warnings |= {(w["code"], w["message"]) for w in data.get("energy", {}).get("warnings", [])}
    except (OSError, ValueError, KeyError, TypeError):
        warnings = {(c, "") for c in str(r["warning_codes"] or "").split(",") if c}
    return {
        "study_dir": study_dir,
        "run_id": run_id,
        "status": None,
        "run": r,
        "warnings": [{"code": c, "message": m} for c, m in sorted(warnings)],
    }


def _print_run(data: dict[str, Any]) -> None:
    run_id, study_dir, r = data["run_id"], data["study_dir"], data["run"]
    if r is None:
        s = data["status"]
        console.print(
            f"run [bold]{escape(run_id)}[/] of {escape(study_dir)}: [red]{s['status']}[/]"
            + (f" in {s['phase']}" if s["phase"] else "")
        )
        console.print(escape(f"{s['message'] or ''}  [{s['run_dir']}]"))
        return
    console.print(f"run [bold]{escape(run_id)}[/]  {escape(str(r['run_dir']))}")
    t = Table(
        title=f"{escape(str(r['config_label']))}  ({str(r['config_hash'])[:8]})", show_header=False
    )
    t.add_column("metric", overflow="fold")
    t.add_column("value", justify="right", overflow="fold")
    energy = (
        fmt(r["total_energy_j"]) + " J"
        if r["energy.available"]
        else f"— ({r['energy.unavailable_reason']})"
    )
    for name, value in (
        ("energy (raw)", energy),
        ("energy per output token", fmt(r["energy_per_output_token_j"]) + " J"),
        ("output tokens/s", fmt(r["output_tokens_per_s"])),
        ("TTFT p50 / p99", f"{fmt(r['ttft_p50_ms'])} / {fmt(r['ttft_p99_ms'])} ms"),
        ("ITL mean", f"{fmt(r['itl_mean_ms'])} ms"),
        ("measured window", f"{fmt(r['duration_s'])} s"),
        (
            "valid",
            "no: failed " + str(r["failed_gates"] or "a validity gate")
            if r["valid"] is False
            else "yes",
        ),
        ("meter", str(r["energy.meter"])),
        ("GPUs measured", str(r["energy.gpus"] or "—")),
        ("GPUs of the machine", f"{r['env.gpu_count'] or 0}x {r['env.gpu_model'] or '—'}"),
        ("runner", str(r["runner.kind"]) + (f":{r['runner.image']}" if r["runner.image"] else "")),
    ):
        t.add_row(name, escape(value))
    console.print(t)
    for w in data["warnings"]:
        text = f"[{w['code']}] {w['message']}"
        console.print(f"[yellow]warning[/] {escape(text)}")


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
        _print_json([dict(zip(cols, r, strict=True)) for r in rows])
        return
    console.print(_table(cols, rows[:limit]))
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
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, default=_json_default) + "\n")
        return
    console.print(f"A: {escape(result.a.describe())}\nB: {escape(result.b.describe())}")
    if result.environment_differs:
        console.print(
            "[bold yellow]different environments[/]: "
            + ", ".join(result.environment_differs)
            + " differ; differences below mix the change you made with these"
        )
    else:
        console.print(
            "[green]same environment[/] (GPU, driver, engine versions, power limit, meter)"
        )
    env = Table(title="environment")
    for c in ("field", "A", "B", ""):
        env.add_column(c, overflow="fold")
    for f, (x, y) in {**result.environment, **result.info}.items():
        flag = "[yellow]differs[/]" if f in result.environment_differs else ""
        env.add_row(f, escape(x), escape(y), flag)
    console.print(env)
    for pair in result.pairs:
        label = pair.label_a if pair.label_a == pair.label_b else f"{pair.label_a} → {pair.label_b}"
        t = Table(title=f"{escape(label)}: B - A with Welch 95 % CI")
        for c in ("metric", "A mean (n)", "B mean (n)", "B - A", "95 % CI", "relative"):
            t.add_column(c, overflow="fold")
        for m in pair.metrics:
            ci = (
                f"{fmt(m.ci95_low, 3)} .. {fmt(m.ci95_high, 3)}" + (" *" if m.significant else "")
                if m.ci95_low is not None
                else "— (needs 2 runs each)"
            )
            t.add_row(
                m.metric,
                f"{fmt(m.mean_a)} ({m.n_a})",
                f"{fmt(m.mean_b)} ({m.n_b})",
                fmt(m.diff, 3),
                ci,
                f"{m.relative * 100:+.1f} %" if m.relative is not None else "—",
            )
        console.print(t)
    if any(m.significant for p in result.pairs for m in p.metrics):
        console.print("* the 95 % interval excludes 0")
    for e in result.excluded:
        console.print(f"[yellow]left out (invalid)[/] {escape(e.describe())}")
    for u in result.unmatched:
        console.print(f"[yellow]not compared[/] {escape(u)}")


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
        _print_json({"written": [str(p) for p in paths], "leaderboards": boards})
        return
    if not boards:
        console.print("0 entries: no configuration in the archive; nothing written")
    for board in boards:
        console.print(escape(board_summary(board)), highlight=False, soft_wrap=True)
    for p in paths:
        console.print(escape(str(p)), highlight=False, soft_wrap=True)
