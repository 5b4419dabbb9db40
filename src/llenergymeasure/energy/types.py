"""Records the energy layer produces; the result JSON embeds them as they are.

These pydantic models are the contract between ``energy/`` and the rest of the package: meters
fill them, the harness stores them in ``ExperimentResult``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: field names before results schema 1.2 (issue 19) -> their names now; old results still load
RENAMED_FIELDS = {
    "energy_adjusted_j": "energy_above_idle_j",
    "total_energy_adjusted_j": "total_energy_above_idle_j",
    "energy_per_output_token_adjusted_j": "energy_per_output_token_above_idle_j",
    "energy_per_request_adjusted_j": "energy_per_request_above_idle_j",
}


def rename_old_fields(data: Any) -> Any:
    """A copy of a record's input dict with pre-1.2 field names mapped to the current ones."""
    if not isinstance(data, dict) or not any(k in data for k in RENAMED_FIELDS):
        return data
    out = dict(data)
    for old, new in RENAMED_FIELDS.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
    return out


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValidityWarning(_Record):
    """A structured warning about the measurement's validity (stored, shown, never fatal)."""

    code: str = Field(
        ..., description="stable identifier, e.g. short_window, throttling, counter_reset"
    )
    message: str
    severity: Literal["info", "warning"] = "warning"
    device: int | None = Field(None, description="NVML index the warning concerns, if one")
    details: dict[str, Any] = Field(default_factory=dict)


class DeviceEnergy(_Record):
    """One GPU's energy over a window."""

    nvml_index: int
    cuda_index: int | None = None
    uuid: str | None = None
    name: str | None = None
    energy_j: float = Field(..., description="raw energy over the window")
    energy_above_idle_j: float | None = Field(
        None,
        description="raw - resident idle_power_w * duration_s, not clamped (negative is information)",
    )
    energy_above_idle_se_j: float | None = Field(
        None,
        description="standard error of energy_above_idle_j from the baseline's: duration_s * SE(idle W)",
    )
    idle_power_w: float | None = None
    method: Literal["counter", "integrated_power", "zeus"] = "counter"
    integrated_energy_j: float | None = Field(
        None, description="trapezoidal integral of sampled power (cross-check)"
    )
    mean_power_w: float | None = None
    peak_power_w: float | None = None
    n_samples: int = 0
    power_source: str | None = Field(
        None,
        description="power reading sampled: instant (NVML field) or power_usage (may be a 1 s average)",
    )
    counter_resets: int = Field(
        0,
        description="backward steps of the energy counter inside the window; in results "
        "written before a counter stepping back failed the window (issue 30) only, 0 since",
    )
    mean_utilization_pct: float | None = Field(
        None,
        description="mean NVML GPU utilisation over the window's samples (share of time a kernel "
        "ran); about 0 for a GPU held but left idle, whose energy still counts in the total (1.3)",
    )
    max_memory_used_mb: float | None = Field(
        None, description="highest device memory in use over the window's samples, MiB (1.3)"
    )
    edges_aligned: bool | None = Field(
        None,
        description=(
            "both ends of the window were placed on an update of this GPU's energy counter "
            "(NVML meter: it waits up to 1.5 sensor periods for one); null: no counter"
        ),
    )
    quantisation_bound_j: float | None = Field(
        None,
        description=(
            "largest error of energy_j from the window's edges: power x the update time's "
            "resolution per aligned edge, sensor period x the larger edge power otherwise"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return rename_old_fields(data)

    @property
    def energy_adjusted_j(self) -> float | None:
        """Pre-1.2 name of ``energy_above_idle_j``."""
        return self.energy_above_idle_j


class MonotonicWindow(_Record):
    """A window on CLOCK_MONOTONIC (``time.monotonic()``: seconds since boot, never stepped by
    NTP), comparable between processes of the same boot only: ``boot_id`` says which."""

    start_s: float
    end_s: float
    boot_id: str | None = Field(
        None, description="/proc/sys/kernel/random/boot_id of the process (None: unknown)"
    )


class EnergyMeasurement(_Record):
    """The result of one meter window over a set of GPUs."""

    meter: str = Field(..., description="which meter produced the number: nvml, zeus, null, fake")
    available: bool = True
    unavailable_reason: str | None = None
    duration_s: float = 0.0
    sensor_period_s: float | None = Field(
        None, description="sensor update period the meter assumed or measured"
    )
    sample_period_s: float | None = Field(None, description="sampler's polling period")
    total_energy_j: float | None = None
    total_energy_above_idle_j: float | None = None
    total_energy_above_idle_se_j: float | None = Field(
        None, description="root-sum-square of the devices' energy_above_idle_se_j"
    )
    devices: list[DeviceEnergy] = Field(default_factory=list)
    warnings: list[ValidityWarning] = Field(default_factory=list)
    started_at: str | None = Field(None, description="UTC ISO time the window opened")
    window_monotonic: MonotonicWindow | None = Field(
        None, description="the window on CLOCK_MONOTONIC, for overlaps between processes"
    )
    timeseries_source: str | None = Field(
        None,
        description="where the time series came from: nvml_sampler, zeus_power_monitor, or "
        "zeus_power_monitor+nvml_sampler (Zeus's power at the sampler's rows)",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return rename_old_fields(data)

    @property
    def total_energy_adjusted_j(self) -> float | None:
        """Pre-1.2 name of ``total_energy_above_idle_j``."""
        return self.total_energy_above_idle_j


class BaselineRecord(_Record):
    """Idle power per GPU, measured (or read from the cache) before the measured window."""

    enabled: bool = True
    available: bool = True
    unavailable_reason: str | None = None
    idle_power_w: dict[int, float] = Field(
        default_factory=dict, description="NVML index -> mean idle W"
    )
    duration_s: float | None = None
    measured_at: str | None = None
    from_cache: bool = False
    cache_key: str | None = None
    n_samples: int = 0
    warnings: list[ValidityWarning] = Field(
        default_factory=list,
        description="validity warnings of the idle window (e.g. foreign_process)",
    )
    kind: Literal["cold", "resident"] | None = Field(
        None,
        description="cold: before the engine starts; resident: this process, model loaded, settled",
    )
    idle_power_se_w: dict[int, float] = Field(
        default_factory=dict, description="standard error of idle_power_w over its sub-windows"
    )
    n_windows: int = Field(0, description="sub-windows (about 1 s each) the idle mean is over")
    settle_s: float | None = Field(None, description="time waited for power to settle first")
    drift: dict[int, float] = Field(
        default_factory=dict,
        description=(
            "fitted relative change of idle W over the window (least-squares line through the "
            "sub-window means: fit at the last / at the first - 1)"
        ),
    )
    drift_se: dict[int, float] = Field(
        default_factory=dict,
        description="standard error of drift (from the fit's residuals; absent under 3 sub-windows)",
    )
    state: dict[int, dict[str, Any]] = Field(
        default_factory=dict,
        description="per GPU at the window: pstate, sm/mem clock MHz, temperature C, util %",
    )
    accepted: bool = Field(
        True, description="false: utilisation above the limit or drifting power; not applied"
    )
    rejected_reason: str | None = None
    window_monotonic: MonotonicWindow | None = Field(
        None,
        description="the idle window (settle time included) on CLOCK_MONOTONIC, for overlaps "
        "with runs beside it; from the cache: the window that measured it (None: not recorded)",
    )


class CpuEnergy(_Record):
    """CPU package and DRAM energy from RAPL (powercap), reported apart from GPU energy."""

    available: bool = False
    unavailable_reason: str | None = None
    package_j: float | None = None
    dram_j: float | None = None
    domains: dict[str, float] = Field(default_factory=dict)


class CarbonEstimate(_Record):
    """CO2 estimate: energy x PUE x grid carbon intensity. An estimate, stored apart from energy."""

    estimate: Literal[True] = True
    co2_g: float | None = None
    energy_kwh: float | None = None
    carbon_intensity_gco2_kwh: float | None = None
    datacenter_pue: float | None = None
    intensity_source: str | None = Field(
        None, description="user_config, env:LLEM_CARBON_INTENSITY, codecarbon"
    )
    country_iso_code: str | None = Field(
        None, description="country of CodeCarbon's intensity lookup (3-letter ISO 3166), if used"
    )
    region: str | None = Field(
        None, description="region inside that country for CodeCarbon's lookup, if given"
    )
    unavailable_reason: str | None = None
