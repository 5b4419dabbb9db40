"""``llem``: a thin typer CLI over the library.

Exit codes: 0 ok, 1 failure while running, 2 bad input, 74 a file or directory could not be
read or written (read-only or full disk, permissions), 130 interrupted (Ctrl-C), 143 stopped by
SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from llenergymeasure._version import __version__
from llenergymeasure.cli.help_style import LlemCommand, LlemGroup
from llenergymeasure.errors import LLEMError

app = typer.Typer(
    name="llem",
    help="Measure the energy and performance of LLM inference.",
    no_args_is_help=True,
    add_completion=True,  # llem --install-completion / --show-completion (bash, zsh, fish)
    pretty_exceptions_enable=False,
    cls=LlemGroup,
)
console = Console()
err_console = Console(stderr=True)
#: -q/--quiet or -v/--verbose of this invocation; None: the user config's ui.verbosity decides.
VERBOSITY: str | None = None


QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="failures and final results only (ui.verbosity; before or after run)"
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="also each run's folder and error files")
]


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"llem (llenergymeasure) {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Measure the energy and performance of LLM inference."""
    global VERBOSITY
    VERBOSITY = _verbosity(quiet, verbose, None)


def _verbosity(quiet: bool, verbose: bool, before: str | None) -> str | None:
    """-q or -v, given before the subcommand (``before``) or after it; both is an error."""
    chosen = (
        {before} - {None} | ({"quiet"} if quiet else set()) | ({"verbose"} if verbose else set())
    )
    if len(chosen) > 1:
        err_console.print("[bold red]error:[/] give -q/--quiet or -v/--verbose, not both")
        raise typer.Exit(2)
    return chosen.pop() if chosen else None


def fail(exc: LLEMError) -> None:
    err_console.print("[bold red]error:[/] " + escape(str(exc)), highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


@app.command(cls=LlemCommand)
def run(
    file: Annotated[
        Path | None, typer.Argument(metavar="FILE", help="experiment or study YAML file")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="validate and print the plan; run nothing")
    ] = False,
    runner: Annotated[
        str | None,
        typer.Option(
            "--runner",
            metavar="RUNNER",
            help="local | docker | docker:<image> | slurm (env vars and user config take precedence)",
        ),
    ] = None,
    cycles: Annotated[
        int | None, typer.Option("--cycles", min=1, help="override execution.n_cycles")
    ] = None,
    no_gaps: Annotated[
        bool, typer.Option("--no-gaps", help="skip thermal gaps (development only)")
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", metavar="STUDY_DIR", help="continue an interrupted study directory"
        ),
    ] = None,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="stop the study at the first failed run")
    ] = False,
    results_dir: Annotated[
        Path | None,
        typer.Option("--results-dir", metavar="DIR", help="override output.results_dir"),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="do not ask before running a study (ui.prompt)")
    ] = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="slurm runner: return once the jobs are submitted (follow with llem status DIR)",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="summary as JSON on stdout (progress on stderr)")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="fail the study (exit 1) when any run fails a validity gate"),
    ] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run an experiment or a study (told apart by the YAML's content)."""
    from llenergymeasure.cli.run_cmd import RunArgs, run_command

    verbosity = _verbosity(quiet, verbose, VERBOSITY)
    args = RunArgs(
        file=file,
        dry_run=dry_run,
        runner=runner,
        cycles=cycles,
        no_gaps=no_gaps,
        resume=resume,
        fail_fast=fail_fast,
        results_dir=results_dir,
        assume_yes=yes,
        detach=detach,
        verbosity=verbosity,
        as_json=as_json,
        strict=strict,
    )
    try:
        code = run_command(args, console)
    except LLEMError as exc:
        fail(exc)
        return
    raise typer.Exit(code)


@app.command(cls=LlemCommand)
def config(
    probe_gpus: Annotated[
        bool, typer.Option("--probe/--no-probe", help="query NVML for GPUs")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print everything as JSON")] = False,
) -> None:
    """Show the user config, each backend's runner and its source, the environment and the energy meters."""
    from llenergymeasure.cli.config_cmd import config_command

    try:
        config_command(console, probe_gpus=probe_gpus, as_json=as_json)
    except LLEMError as exc:
        fail(exc)


@app.command(cls=LlemCommand)
def report(
    study_dir: Annotated[Path, typer.Argument(help="a study directory written by `llem run`")],
) -> None:
    """Regenerate the HTML report and exports of an existing study directory."""
    try:
        from llenergymeasure.cli.report import report_command
    except ImportError as exc:
        err_console.print(
            "[bold red]error:[/] "
            + escape(
                f"the report needs the [report] extra (pip install 'llenergymeasure[report]'): {exc}"
            ),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    notes: list[str] = []
    try:
        path = report_command(study_dir, notes)
    except LLEMError as exc:
        fail(exc)
        return
    finally:
        for line in notes:  # damaged files skipped
            err_console.print("[yellow]note:[/] " + escape(line), highlight=False, soft_wrap=True)
    console.print("report: " + escape(str(path)), highlight=False, soft_wrap=True)


@app.command(cls=LlemCommand)
def status(
    study_dir: Annotated[Path, typer.Argument(help="a study directory written by `llem run`")],
    as_json: Annotated[
        bool, typer.Option("--json", help="the runs and their counts as JSON on stdout")
    ] = False,
) -> None:
    """Show a study's runs (SLURM job, node, state, exit code) and record jobs that ended."""
    from llenergymeasure.cli.slurm_cmd import status_command

    try:
        code = status_command(study_dir, console, as_json=as_json)
    except LLEMError as exc:
        fail(exc)
        return
    raise typer.Exit(code)


from llenergymeasure.cli.results_cmd import results_app  # noqa: E402  (typer and rich only)

app.add_typer(results_app, name="results")


@app.command(cls=LlemCommand)
def init(
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="write without asking (never over an existing file)")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="with --yes: replace an existing user config")
    ] = False,
    path: Annotated[
        Path | None,
        typer.Option(
            "--path", metavar="FILE", help="where to write (default: the user config path)"
        ),
    ] = None,
) -> None:
    """Write a commented user config for this machine (GPUs, Docker, energy meters detected)."""
    from llenergymeasure.cli.init_cmd import init_command

    try:
        code = init_command(console, assume_yes=yes, force=force, path=path)
    except LLEMError as exc:
        fail(exc)
        return
    raise typer.Exit(code)


def main() -> None:
    import signal

    from llenergymeasure._signals import install_stop_handlers, last_stop_signal, stop_description
    from llenergymeasure.errors import filesystem_error, is_filesystem_error

    # Ctrl-C must stop llem even when it started with SIGINT ignored (a background job of a
    # non-interactive shell); SIGTERM (SLURM, systemd, docker stop) stops it the same way.
    install_stop_handlers()
    try:
        app()
    except SystemExit as exc:
        # typer ends any KeyboardInterrupt with 130; a SIGTERM outside a study ends with 143
        if exc.code == 130 and last_stop_signal() == signal.SIGTERM:
            sys.exit(143)
        raise
    except KeyboardInterrupt as exc:
        how, code = stop_description(exc)
        err_console.print(f"interrupted ({how})")
        sys.exit(code)
    except OSError as exc:
        if not is_filesystem_error(exc):
            raise
        fail_exc = filesystem_error(exc, "read or write a file")
        err_console.print(
            "[bold red]error:[/] " + escape(str(fail_exc)), highlight=False, soft_wrap=True
        )
        sys.exit(fail_exc.exit_code)
