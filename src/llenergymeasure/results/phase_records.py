"""Records of the phases around the measured window: re-warm, compile, and the wall-time split.

Fields of ``ExperimentResult`` (``results/models.py``), kept apart so that module stays one
screenful of the result itself. Pure data, like ``results/models.py``: no loader, harness or
statistics module is imported here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RewarmRecord(_Record):
    """The re-warm between a resident idle baseline measured in this run and the window.

    The baseline's settle and idle window leave the GPU idle for up to a minute, so it cools and
    clocks down; a run whose baseline came from the cache starts its window straight after
    warmup. Re-warm runs the warmup's batch again until its latency, power and temperature are
    back at the warmup's end (``docs/methodology.md``), bounded like warmup.
    """

    batches: int = Field(..., description="batches of the warmup's batch run again")
    duration_s: float
    reached: bool = Field(..., description="the last batch was back at the warmup's level")
    stopped_by: Literal["reached", "max_runs", "max_s"]
    latencies_s: list[float] = Field(default_factory=list)
    energy_j: float | None = Field(
        None, description="GPU energy over the re-warm, not in the window"
    )
    target_latency_s: float | None = Field(None, description="the warmup's last batch latency")
    target_power_w: dict[int, float] = Field(
        default_factory=dict, description="NVML index -> mean W over the warmup's last batch"
    )
    target_temperature_c: dict[int, float] = Field(
        default_factory=dict, description="NVML index -> temperature at the warmup's end"
    )
    before_power_w: dict[int, float] = Field(
        default_factory=dict, description="the resident idle W the re-warm started from"
    )
    before_temperature_c: dict[int, float] = Field(
        default_factory=dict, description="temperature at the idle baseline's end"
    )
    after_power_w: dict[int, float] = Field(
        default_factory=dict, description="mean W over the last re-warm batch"
    )
    after_temperature_c: dict[int, float] = Field(
        default_factory=dict, description="temperature at the last re-warm batch's end"
    )
    tolerance: float = Field(
        ..., description="relative: latency <= target x (1 + t), power >= target x (1 - t)"
    )
    temperature_tolerance_c: float = Field(..., description="temperature >= target - this")


class CompileRecord(_Record):
    """The engine's compile, apart from the warmup that follows it (``harness/compile_cache.py``).

    ``cache``: ``hit`` when the compiled artefacts came from the persistent cache, ``partial``
    when the engine's counters show hits and misses (some graphs still compiled; seen on an H100
    for the compiled decode loop: 4 hits, one AOTAutograd miss), ``miss`` when they were compiled
    (and stored) now, ``off`` when no persistent cache was used
    (``measurement.compile_cache: off``) or nothing was compiled (``reason`` says which).
    """

    cache: Literal["hit", "partial", "miss", "off"]
    duration_s: float | None = Field(
        None,
        description="the compile phase: the first batches of the measured shapes, which "
        "compile (or load from the cache) and capture CUDA graphs; None: compiled inside load",
    )
    key: str | None = Field(None, description="the cache directory's key (compile/<key>/)")
    mode: Literal["on", "off", "refresh"] = "on"
    directory: str | None = None
    lock_wait_s: float = Field(0.0, description="waited for another run compiling this key")
    batches: int = Field(0, description="batches the compile phase ran")
    counters: dict[str, int] = Field(
        default_factory=dict, description="the engine's cache counters over the compile phase"
    )
    reason: str | None = None


class TimingsRecord(_Record):
    """Where the experiment process's wall time went, in seconds (docs/performance.md).

    The phases follow each other without gaps from the harness's start to the result's write;
    ``startup_s`` is the interpreter's start (and the package's import) before the harness ran.
    ``total_s`` is the process start (harness start when unknown) to ``result.json`` written.
    """

    startup_s: float | None = Field(
        None, description="process start to harness start (None: not run as its own process)"
    )
    environment_s: float = 0.0
    model_s: float = Field(0.0, description="resolving the model, building the backend")
    imports_s: float = Field(0.0, description="the engine's import, before the load timer")
    cold_baseline_s: float = 0.0
    load_s: float = 0.0
    prompts_s: float = 0.0
    compile_s: float = 0.0
    warmup_s: float = 0.0
    resident_baseline_s: float = 0.0
    rewarm_s: float = 0.0
    window_s: float = Field(0.0, description="the measure phase (window and its edges)")
    quality_s: float = 0.0
    result_s: float = Field(0.0, description="building and writing the result")
    other_s: float = Field(0.0, description="phases not named above")
    total_s: float
    window_share: float = Field(..., description="the measured window's duration / total_s")
