"""``llem init``: write a commented user config for this machine.

It looks at what is here — GPUs (NVML), a Docker daemon and the ``llenergymeasure:<backend>``
images, importable engines, usable energy meters — proposes a user config with a comment beside
each choice saying why, shows it, and writes it after asking (``--yes`` writes without asking). An
existing user config is never replaced without a yes to that question, or ``--yes --force``.
The text is validated as a ``UserConfig`` before it is written.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from llenergymeasure.backends import registry
from llenergymeasure.config.user import load_user_config, user_config_path
from llenergymeasure.errors import ConfigError, LLEMError


@dataclass
class Detected:
    gpus: list[str] = field(default_factory=list)  # "0: NVIDIA H200, power limit 700 W"
    gpu_problem: str | None = None
    docker: bool = False
    docker_problem: str | None = None
    images: set[str] = field(default_factory=set)
    engines: dict[str, bool] = field(default_factory=dict)
    meters: list[tuple[str, bool, str]] = field(default_factory=list)


def detect() -> Detected:
    """What this machine has; every probe that fails says why instead of raising."""
    from llenergymeasure.environment.snapshot import capture_environment

    found = Detected()
    snap = capture_environment(probe_gpus=True)
    found.gpus = [
        f"{g.nvml_index}: {g.name}, {g.memory_total_mb} MiB, power limit {g.power_limit_w} W"
        for g in snap.gpus
    ]
    found.gpu_problem = None if snap.gpus else snap.probe_errors.get("gpus", "no GPU found")
    try:
        from llenergymeasure.runners.docker.daemon import docker_client

        client = docker_client(timeout_s=5.0)
        try:
            found.docker = True
            for image in client.images.list(name="llenergymeasure"):
                found.images.update(image.tags)
        finally:
            client.close()
    except (LLEMError, OSError, ImportError) as exc:
        found.docker_problem = str(exc).split(";")[0]
    except Exception as exc:  # the SDK raises its own types when listing
        found.docker_problem = f"{type(exc).__name__}: {exc}"
    # a backend's first engine module present means it can run here without a container
    found.engines = {
        s.name: not s.engine_modules or importlib.util.find_spec(s.engine_modules[0]) is not None
        for s in registry.specs()
    }
    try:
        from llenergymeasure.energy import meter_availability

        found.meters = meter_availability(os.environ)
    except ImportError as exc:
        found.meters = [("nvml", False, f"energy layer unavailable: {exc}")]
    return found


def _runner_line(backend: str, found: Detected) -> str:
    spec = registry.get(backend)
    image = spec.image
    engine = spec.engine_modules[0] if spec.engine_modules else None
    if found.docker and image is not None and image in found.images:
        return f"  {backend}: docker:{image}  # image {image} is built here"
    if found.engines.get(backend):
        if engine is None:
            return f"  {backend}: local  # it imports no engine"
        return f"  {backend}: local  # {engine} is importable in this Python"
    if found.docker and image is not None:
        return (
            f"  {backend}: docker:{image}  # not importable here; build the image with "
            f"`make images BACKENDS={spec.target}`"
        )
    why = found.docker_problem or "no Docker" if image is not None else "it has no image"
    return f"  # {backend}: local  # {engine} is not importable and {why}"


def _gap_lines(found: Detected) -> list[str]:
    """Thermal gaps let a GPU cool to the same state before each configuration and cycle; on a
    machine without one no energy is measured, so long gaps would only make studies slow."""
    if found.gpus:
        return [
            "  config_gap_seconds: 60  # thermal gap between configurations",
            "  cycle_gap_seconds: 300  # thermal gap between cycles",
        ]
    return [
        "  config_gap_seconds: 5  # no GPU here: no energy is measured, so short gaps"
        " (60 on a GPU machine)",
        "  cycle_gap_seconds: 10  # (300 on a GPU machine)",
    ]


def render(found: Detected, results_dir: str = "./results") -> str:
    """The commented user config for what ``detect`` found."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nvml = next((m for m in found.meters if m[0] == "nvml"), ("nvml", False, "not probed"))
    zeus = next((m for m in found.meters if m[0] == "zeus"), ("zeus", False, "not probed"))
    if zeus[1]:
        backend, why = "auto", f"zeus usable ({zeus[2]}); auto prefers it, then NVML"
    elif nvml[1]:
        backend, why = "auto", f"NVML usable: {nvml[2]}"
    else:
        reason = nvml[2].split(";")[0].split(": NVML call")[0]
        backend, why = "none", f"no GPU energy meter here ({reason}); results say so"
    runner_lines = [_runner_line(b, found) for b in registry.names()]
    header = "local | docker | docker:<image> per backend (LLEM_RUNNER_<BACKEND> overrides)"
    if all(line.lstrip().startswith("#") for line in runner_lines):
        runner_block = [f"runners: {{}}  # {header}", *runner_lines]
    else:
        runner_block = [f"runners:  # {header}", *runner_lines]
    lines = [
        f"# llenergymeasure user config for {socket.gethostname()}, written by `llem init` on {now}.",
        "# It describes THIS machine (runners, paths, meters); experiment files stay portable.",
        "# Every field: docs/configuration.md (user config). `llem config` shows what is in effect.",
        "#",
        "# Detected:",
        *(f"#   GPU {g}" for g in found.gpus),
        *([f"#   GPUs: none ({found.gpu_problem})"] if not found.gpus else []),
        "#   Docker: "
        + (
            "daemon reachable; images: " + (", ".join(sorted(found.images)) or "none built")
            if found.docker
            else f"not usable ({found.docker_problem})"
        ),
        *(
            f"#   meter {name}: {'usable' if ok else 'not usable'} ({why_})"
            for name, ok, why_ in found.meters
        ),
        "",
        *runner_block,
        "output:",
        f"  results_dir: {results_dir}  # study directories go here; `llem results` reads it",
        "  model_cache_dir: ~/.cache/llenergymeasure  # synthetic models and engine caches",
        "measurement:",
        f"  energy_backend: {backend}  # {why}",
        "  # carbon_intensity_gco2_kwh: 350  # your grid's gCO2/kWh (unset: no CO2 estimate)",
        "  datacenter_pue: 1.0  # power usage effectiveness of the room (1.0: not counted)",
        "ui:",
        "  prompt: true  # ask before a study of several runs (llem run --yes skips)",
        "  verbosity: normal  # quiet | normal | verbose; `llem -q` / `llem -v` override per call",
        "execution:",
        *_gap_lines(found),
        "",
    ]
    return "\n".join(lines)


def _validate(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "config.yaml"
        probe.write_text(text)
        load_user_config(probe)


def _ask(console: Console, question: str, default_yes: bool) -> bool:
    answer = console.input(question).strip().lower()
    return answer in ("y", "yes") or (default_yes and answer == "")


def init_command(
    console: Console, *, assume_yes: bool, force: bool, path: Path | None = None
) -> int:
    target = Path(os.path.expanduser(str(path))) if path else user_config_path()
    at_terminal = sys.stdin.isatty()
    console.print("looking at this machine (GPUs, Docker, energy meters)…")
    text = render(detect())
    _validate(text)
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    if target.exists():
        if assume_yes and not force:
            raise ConfigError(
                f"{target} exists; nothing written. Replace it with `llem init --yes --force`, "
                "or answer the question without --yes, or write elsewhere with --path"
            )
        if not (assume_yes and force):
            if not at_terminal:
                raise ConfigError(
                    f"{target} exists and there is no terminal to confirm replacing it; "
                    "nothing written (`llem init --yes --force` replaces it)"
                )
            if not _ask(console, f"{target} exists. Replace it? [y/N] ", default_yes=False):
                console.print("nothing written")
                return 0
    elif not assume_yes:
        if not at_terminal:
            raise ConfigError(
                "llem init asks before writing and there is no terminal; pass --yes to write "
                f"{target}"
            )
        if not _ask(console, f"write this to {target}? [Y/n] ", default_yes=True):
            console.print("nothing written")
            return 0
    from llenergymeasure.results.io import atomic_write_text

    atomic_write_text(target, text)
    console.print(f"wrote [bold]{escape(str(target))}[/]; `llem config` shows it in effect")
    return 0
