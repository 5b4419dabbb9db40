"""``llem config``: the user config, resolved runners with sources, environment and meters."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.backends import registry
from llenergymeasure.config.user import load_user_config, user_config_path
from llenergymeasure.environment.snapshot import capture_environment, context_from_user_config
from llenergymeasure.errors import LLEMError
from llenergymeasure.runners.resolution import resolve_runner

#: what a machine without a GPU measures (``llem config`` says it up front)
NO_GPU_NOTE = (
    "no NVIDIA GPU here: runs on this machine record no energy (the energy meters read GPU "
    "counters), only throughput and latency; docs/meters.md says which meter needs what"
)


def config_command(console: Console, probe_gpus: bool = True, as_json: bool = False) -> None:
    if as_json:
        from llenergymeasure.cli.json_out import emit

        emit(config_data(probe_gpus))
        return
    path = user_config_path()
    cfg = load_user_config()
    console.print(
        f"user config: [bold]{escape(str(path))}[/] "
        + ("" if path.exists() else "[dim](not present: defaults)[/]")
    )
    # Every value below comes from a file, the environment or a package: rich must print it as
    # text, never read it as markup (``llenergymeasure[zeus]`` would lose its ``[zeus]``).
    values = Table(show_header=True, title="user config values")
    values.add_column("field")
    values.add_column("value")
    data = cfg.model_dump(mode="json")
    for section, content in data.items():
        if isinstance(content, dict) and content:
            for k, v in content.items():
                values.add_row(escape(f"{section}.{k}"), escape(str(v)))
        elif isinstance(content, dict):
            values.add_row(section, "{}")
    values.add_row(
        "output.model_cache_dir (resolved)", escape(str(cfg.output.resolved_model_cache_dir()))
    )
    console.print(values)

    runners = Table(title="runners (env var > user config > --runner > default)")
    runners.add_column("backend")
    runners.add_column("runner")
    runners.add_column("source")
    for b in registry.names():
        try:
            r = resolve_runner(b, cfg)
            runners.add_row(b, escape(r.describe()), escape(r.source))
        except LLEMError as exc:
            runners.add_row(b, "[red]invalid[/]", escape(str(exc)))
    console.print(runners)

    snap = capture_environment(**context_from_user_config(cfg), probe_gpus=probe_gpus)
    env = Table(title="environment", show_header=False)
    env.add_column("field")
    env.add_column("value")
    env.add_row("os", escape(str(snap.os)))
    env.add_row("python", escape(snap.python_version))
    env.add_row("cpu", escape(f"{snap.cpu_model} ({snap.cpu_cores_logical} logical cores)"))
    env.add_row("ram", f"{snap.ram_total_gb} GB")
    if snap.gpus:
        for g in snap.gpus:
            env.add_row(
                f"gpu {g.nvml_index}",
                escape(f"{g.name}, {g.memory_total_mb} MiB, power limit {g.power_limit_w} W"),
            )
        env.add_row("driver / CUDA", escape(f"{snap.driver_version} / {snap.cuda_driver_version}"))
    else:
        env.add_row("gpus", escape(f"none ({snap.probe_errors.get('gpus', 'not found')})"))
    env.add_row(
        "in container",
        escape(
            f"{snap.in_container}" + (f" ({snap.container_image})" if snap.container_image else "")
        ),
    )
    env.add_row(
        "carbon intensity",
        escape(f"{snap.carbon_intensity_gco2_kwh} gCO2/kWh ({snap.carbon_intensity_source})")
        if snap.carbon_intensity_gco2_kwh is not None
        else "not set (measurement.carbon_intensity_gco2_kwh or LLEM_CARBON_INTENSITY)",
    )
    env.add_row("datacenter PUE", escape(f"{snap.datacenter_pue} ({snap.datacenter_pue_source})"))
    for name, version in snap.packages.items():
        env.add_row(escape(f"package {name}"), escape(str(version)))
    console.print(env)

    meters = Table(
        title=escape(
            f"energy meters (measurement.energy_backend = {cfg.measurement.energy_backend})"
        )
    )
    meters.add_column("meter")
    meters.add_column("usable here")
    meters.add_column("why / why not")
    try:
        from llenergymeasure.energy import meter_availability

        for name, ok, why in meter_availability(os.environ):
            meters.add_row(escape(name), "[green]yes[/]" if ok else "[red]no[/]", escape(why))
    except ImportError as exc:
        meters.add_row("?", "?", escape(f"energy layer unavailable: {exc}"))
    console.print(meters)
    if probe_gpus and not snap.gpus:
        console.print(f"[yellow]note:[/] {escape(NO_GPU_NOTE)}", soft_wrap=True)


def config_data(probe_gpus: bool = True) -> dict[str, Any]:
    """What ``llem config`` shows, as one JSON-ready mapping (``llem config --json``)."""
    path = user_config_path()
    cfg = load_user_config()
    runners: dict[str, Any] = {}
    for b in registry.names():
        try:
            r = resolve_runner(b, cfg)
            runners[b] = {"runner": r.describe(), "source": r.source}
        except LLEMError as exc:
            runners[b] = {"runner": None, "error": str(exc)}
    snap = capture_environment(**context_from_user_config(cfg), probe_gpus=probe_gpus)
    meters: list[dict[str, Any]] = []
    try:
        from llenergymeasure.energy import meter_availability

        meters = [
            {"meter": name, "usable": ok, "why": why}
            for name, ok, why in meter_availability(os.environ)
        ]
    except ImportError as exc:
        meters = [{"meter": None, "usable": False, "why": f"energy layer unavailable: {exc}"}]
    return {
        "user_config": {"path": str(path), "exists": path.exists()},
        "values": cfg.model_dump(mode="json"),
        "resolved": {"output.model_cache_dir": str(cfg.output.resolved_model_cache_dir())},
        "runners": runners,
        "environment": snap.model_dump(mode="json"),
        "energy_meters": meters,
        "notes": [NO_GPU_NOTE] if probe_gpus and not snap.gpus else [],
    }
