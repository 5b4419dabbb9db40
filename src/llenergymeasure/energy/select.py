"""Choosing the energy meter (``measurement.energy_backend``) and saying what is usable here.

``auto`` prefers Zeus when it is installed and can see the GPUs, else the NVML meter, else the
null meter with the reasons each one failed. An explicit ``nvml`` or ``zeus`` that cannot work
raises ``EnergyMeterError`` instead of silently measuring nothing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

from llenergymeasure.energy.devices import resolve_devices
from llenergymeasure.energy.errors import DeviceMappingError, EnergyMeterError, NvmlError
from llenergymeasure.energy.meters import DEFAULT_SENSOR_PERIOD_S, EnergyMeter, NullMeter
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.nvml_meter import NvmlMeter

ENERGY_BACKENDS = ("auto", "nvml", "zeus", "none")


def _explained(exc: EnergyMeterError, message: str) -> EnergyMeterError:
    """``exc``'s class (when it takes a plain message) carrying ``message``."""
    cls = type(exc) if type(exc) in (EnergyMeterError, DeviceMappingError) else EnergyMeterError
    return cls(message)


def _open_nvml(nvml_module: Any | None) -> Nvml:
    nvml = Nvml(nvml_module)
    try:
        nvml.init()
        count = nvml.device_count()
    except NvmlError as exc:
        nvml.shutdown()
        raise EnergyMeterError(f"no NVIDIA GPU / NVML not usable: {exc}") from exc
    if count == 0:
        nvml.shutdown()
        raise EnergyMeterError("NVML started but reports no GPU")
    return nvml


def _build_nvml(
    cuda_devices: Sequence[int],
    environ: Mapping[str, str],
    nvml_module: Any | None,
    sensor_period_s: float,
    sample_period_s: float | None,
) -> NvmlMeter:
    nvml = _open_nvml(nvml_module)
    try:
        mapping = resolve_devices(cuda_devices, nvml, environ)
        return NvmlMeter(
            nvml,
            mapping,
            sensor_period_s=sensor_period_s,
            sample_period_s=sample_period_s,
            align_edges=True,
        )
    except (EnergyMeterError, NvmlError):
        nvml.shutdown()
        raise


def _zeus_monitor_module(zeus_module: Any | None) -> Any:
    if zeus_module is not None:
        return zeus_module
    if importlib.util.find_spec("zeus") is None:
        raise EnergyMeterError("Zeus is not installed (pip install 'llenergymeasure[zeus]')")
    from llenergymeasure.energy.zeus_meter import import_zeus_monitor

    try:
        return import_zeus_monitor()
    except Exception as exc:  # a broken install raises anything from its imports
        raise EnergyMeterError(f"Zeus is installed but fails to import: {exc}") from exc


def _build_zeus(
    cuda_devices: Sequence[int],
    environ: Mapping[str, str],
    nvml_module: Any | None,
    zeus_module: Any | None,
    sensor_period_s: float,
    sample_period_s: float | None,
    timeseries: bool,
) -> EnergyMeter:
    from llenergymeasure.energy.zeus_meter import ZeusMeter, zeus_device_problem

    problem = zeus_device_problem(environ)
    if problem:
        raise EnergyMeterError(problem)
    zm = _zeus_monitor_module(zeus_module)
    nvml = _open_nvml(nvml_module)
    try:
        mapping = resolve_devices(cuda_devices, nvml, environ)
        return ZeusMeter(
            zm,
            mapping,
            nvml,
            sensor_period_s=sensor_period_s,
            sample_period_s=sample_period_s,
            timeseries=timeseries,
        )
    except (EnergyMeterError, NvmlError):
        nvml.shutdown()
        raise


def select_meter(
    energy_backend: str,
    cuda_devices: list[int],
    environ: Mapping[str, str] | None = None,
    *,
    sensor_period_s: float = DEFAULT_SENSOR_PERIOD_S,
    sample_period_s: float | None = None,
    zeus_timeseries: bool = True,
    nvml_module: Any | None = None,
    zeus_module: Any | None = None,
) -> EnergyMeter:
    """The meter for ``energy_backend`` over the CUDA devices the experiment uses.

    ``cuda_devices`` are CUDA indices as this process sees them; ``environ`` (default
    ``os.environ``) supplies ``CUDA_VISIBLE_DEVICES``. ``nvml_module``/``zeus_module`` inject
    stand-ins for ``pynvml`` and ``zeus.monitor`` (tests). The caller closes the meter.
    """
    env = os.environ if environ is None else environ
    backend = (energy_backend or "").strip().lower()
    if backend not in ENERGY_BACKENDS:
        raise EnergyMeterError(
            f"energy_backend {energy_backend!r} is not known; use one of {', '.join(ENERGY_BACKENDS)}"
        )
    if backend == "none":
        return NullMeter("energy measurement disabled (energy_backend: none)")
    if not cuda_devices:
        return NullMeter("the experiment uses no GPU")
    if backend == "nvml":
        try:
            return _build_nvml(cuda_devices, env, nvml_module, sensor_period_s, sample_period_s)
        except EnergyMeterError as exc:
            raise _explained(
                exc,
                f"energy_backend 'nvml' cannot measure here: {exc}. Use energy_backend: auto "
                "(records energy as unavailable) or none",
            ) from exc
    if backend == "zeus":
        try:
            return _build_zeus(
                cuda_devices,
                env,
                nvml_module,
                zeus_module,
                sensor_period_s,
                sample_period_s,
                zeus_timeseries,
            )
        except EnergyMeterError as exc:
            raise _explained(
                exc,
                f"energy_backend 'zeus' cannot measure here: {exc}. Use energy_backend: nvml or "
                "auto",
            ) from exc
    reasons: list[str] = []
    try:
        return _build_zeus(
            cuda_devices,
            env,
            nvml_module,
            zeus_module,
            sensor_period_s,
            sample_period_s,
            zeus_timeseries,
        )
    except EnergyMeterError as exc:
        reasons.append(f"zeus: {exc}")
    try:
        return _build_nvml(cuda_devices, env, nvml_module, sensor_period_s, sample_period_s)
    except EnergyMeterError as exc:
        reasons.append(f"nvml: {exc}")
    return NullMeter("no usable energy meter (" + "; ".join(reasons) + ")")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def meter_availability(
    environ: Mapping[str, str] | None = None,
    *,
    nvml_module: Any | None = None,
    zeus_installed: bool | None = None,
    rapl_root: str | None = None,
) -> list[tuple[str, bool, str]]:
    """(meter, usable here, why or why not) for nvml, zeus, rapl and codecarbon.

    Cheap: it starts NVML and reads sysfs, but starts no Zeus monitor and measures nothing.
    """
    env = os.environ if environ is None else environ
    rows: list[tuple[str, bool, str]] = []

    nvml_ok = False
    nvml_why: str
    try:
        nvml = _open_nvml(nvml_module)
    except EnergyMeterError as exc:
        nvml_why = str(exc)
    else:
        try:
            count = nvml.device_count()
            parts = []
            for i in range(count):
                counter = "energy counter" if nvml.has_energy_counter(i) else "no energy counter"
                parts.append(f"{i}: {nvml.name(i)} ({counter}, power {nvml.power_source(i)})")
            try:
                driver = nvml.driver_version()
            except NvmlError:
                driver = "unknown"
            nvml_ok = True
            nvml_why = f"{count} GPU(s), driver {driver}: " + "; ".join(parts)
        except NvmlError as exc:
            nvml_why = f"NVML started but a query failed: {exc}"
        finally:
            nvml.shutdown()
    rows.append(("nvml", nvml_ok, nvml_why))

    installed = (
        importlib.util.find_spec("zeus") is not None if zeus_installed is None else zeus_installed
    )
    if not installed:
        rows.append(("zeus", False, "not installed (pip install 'llenergymeasure[zeus]')"))
    else:
        from llenergymeasure.energy.zeus_meter import zeus_device_problem

        problem = zeus_device_problem(env)
        version = _version("zeus") or "version unknown"
        if problem:
            rows.append(("zeus", False, f"zeus {version} installed, but {problem}"))
        elif not nvml_ok:
            rows.append(("zeus", False, f"zeus {version} installed, but it needs NVML: {nvml_why}"))
        else:
            rows.append(("zeus", True, f"zeus {version}; preferred by energy_backend: auto"))

    from llenergymeasure.energy.rapl import rapl_status

    ok, why = rapl_status(rapl_root)
    rows.append(("rapl", ok, why))

    cc = _version("codecarbon")
    if cc is None:
        rows.append(
            (
                "codecarbon",
                False,
                "not installed (pip install 'llenergymeasure[codecarbon]'); CO2 needs "
                "carbon_intensity_gco2_kwh in the user config",
            )
        )
    else:
        rows.append(
            (
                "codecarbon",
                True,
                f"codecarbon {cc}: offline carbon-intensity data used when the user config sets none",
            )
        )
    return rows
