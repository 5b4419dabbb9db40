"""What ``llem results`` prints: values, tables and JSON, and the views of ``results show``
(one study, one run) and ``results compare``, from what the archive returns.

``results_cmd.py`` holds the commands (arguments, opening the archive, errors); this module only
turns their data into output, so the two change for different reasons.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.results.layout import RESULT_FILE

if TYPE_CHECKING:
    from llenergymeasure.results.archive.compare import Comparison
    from llenergymeasure.results.archive.store import Archive

console = Console()


def fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        return f"{value:.{digits}g}"
    return str(value)


def table(cols: list[str], rows: list[tuple], title: str | None = None) -> Table:
    t = Table(title=title)
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*(escape(fmt(v)) for v in r))
    return t


def json_default(value: Any) -> Any:
    return str(value)


def print_json(data: Any) -> None:
    """JSON on stdout, nothing else there (messages go to stderr)."""
    sys.stdout.write(json.dumps(data, indent=2, default=json_default) + "\n")


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


_CONFIG_COLS = (
    "config_label, n_runs, n_invalid, n_failed, energy_per_output_token_j_mean, "
    "energy_per_output_token_j_ci95_half_width, output_tokens_per_s_mean, "
    "output_tokens_per_s_ci95_half_width, ttft_p50_ms_mean, itl_mean_ms_mean, config_hash"
)


def study_data(archive: Archive, study_dir: str) -> dict[str, Any]:
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


def print_study(data: dict[str, Any]) -> None:
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


def run_data(archive: Archive, study_dir: str, run_id: str) -> dict[str, Any]:
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


def print_run(data: dict[str, Any]) -> None:
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


def print_compare(result: Comparison) -> None:
    """``results compare A B`` as tables: environment, then B - A per metric of each pair."""
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
