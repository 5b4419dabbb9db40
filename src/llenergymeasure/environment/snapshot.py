"""The environment snapshot: what the measurement ran on, stored with every result.

Every probe is independent and never raises: a probe that cannot answer leaves its field ``None``
and records why in ``probe_errors[field]``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llenergymeasure.backends import registry
from llenergymeasure.environment.slurm import SlurmInfo, slurm_info
from llenergymeasure.timestamps import utc_now

#: distributions recorded besides this package and the backends' engine packages
_OTHER_PACKAGES = (
    "zeus",
    "codecarbon",
    "nvidia-ml-py",
    "nvidia-cudnn-cu12",
    "nvidia-cudnn-cu13",
    "nvidia-nccl-cu12",
    "nvidia-nccl-cu13",
    "pydantic",
    "numpy",
)
#: the distributions whose versions a snapshot records: this package, every registered backend's
#: engine packages (``backends/registry.py``), then the meters' and the libraries every run uses
KEY_PACKAGES = tuple(
    dict.fromkeys(
        (
            "llenergymeasure",
            *(package for spec in registry.specs() for package in spec.packages),
            *_OTHER_PACKAGES,
        )
    )
)


class GpuInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nvml_index: int
    name: str | None = None
    uuid: str | None = None
    memory_total_mb: float | None = None
    power_limit_w: float | None = None
    default_power_limit_w: float | None = None
    mig_mode: bool | None = None
    pci_bus_id: str | None = None
    # what a reproduction needs besides the model (issue 19); None with probe_errors where unread
    enforced_power_limit_w: float | None = None
    persistence_mode: bool | None = None
    ecc_enabled: bool | None = None
    compute_mode: str | None = None
    pstate: str | None = Field(None, description="P-state when the snapshot was taken")
    temperature_c: float | None = Field(None, description="when the snapshot was taken")
    app_sm_clock_mhz: int | None = Field(None, description="application (target) SM clock")
    app_mem_clock_mhz: int | None = None
    max_sm_clock_mhz: int | None = None
    vbios_version: str | None = None
    pcie_link_gen: int | None = None
    pcie_link_gen_max: int | None = None
    pcie_link_width: int | None = None
    nvlink_active_links: int | None = Field(None, description="links reporting active; 0: none")


class EnvironmentSnapshot(BaseModel):
    """Auto-captured facts about the machine, immutable once stored."""

    model_config = ConfigDict(extra="forbid")

    captured_at: str = Field(default_factory=utc_now)
    hostname: str | None = None
    os: str | None = None
    kernel: str | None = None
    python_version: str = Field(default_factory=lambda: platform.python_version())
    cpu_model: str | None = None
    cpu_cores_logical: int | None = None
    cpu_cores_physical: int | None = None
    ram_total_gb: float | None = None
    gpu_count: int | None = None
    gpus: list[GpuInfo] = Field(default_factory=list)
    gpu_model: str | None = None
    gpu_vram_gb: float | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    cuda_visible_devices: str | None = None
    cpu_governor: str | None = Field(None, description="cpufreq scaling governor of cpu0")
    cudnn_version: str | None = Field(None, description="as the engine's torch reports it")
    nccl_version: str | None = Field(None, description="as the engine's torch reports it")
    packages: dict[str, str | None] = Field(default_factory=dict)
    in_container: bool = False
    container_image: str | None = None
    container_image_id: str | None = None
    carbon_intensity_gco2_kwh: float | None = None
    carbon_intensity_source: str | None = None
    datacenter_pue: float | None = None
    datacenter_pue_source: str | None = None
    #: the SLURM job this ran in (node, job id, partition, allocated GPUs); None outside SLURM
    slurm: SlurmInfo | None = None
    probe_errors: dict[str, str] = Field(default_factory=dict)


def _read_cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _physical_cores() -> int | None:
    try:
        seen = set()
        phys = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                phys = line.split(":")[1].strip()
            elif line.startswith("core id"):
                core = line.split(":")[1].strip()
            elif not line.strip() and core is not None:
                seen.add((phys, core))
                phys = core = None
        if core is not None:
            seen.add((phys, core))
        return len(seen) or None
    except OSError:
        return None


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 2)
    except (OSError, ValueError):
        pass
    return None


def _os_name() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}".strip() or None


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def detect_container(environ: Mapping[str, str]) -> tuple[bool, str | None, str | None]:
    """(in a container?, image name, image id). The docker runner passes the image via env vars."""
    image = environ.get("LLEM_CONTAINER_IMAGE")
    image_id = environ.get("LLEM_CONTAINER_IMAGE_ID")
    inside = bool(image) or Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()
    if not inside:
        try:
            cg = Path("/proc/1/cgroup").read_text()
            inside = any(tag in cg for tag in ("docker", "kubepods", "containerd", "libpod"))
        except OSError:
            pass
    return inside, image, image_id


def _probe_gpus(snap: EnvironmentSnapshot) -> None:
    try:
        import pynvml
    except ImportError:
        snap.probe_errors["gpus"] = "nvidia-ml-py (pynvml) is not installed"
        snap.gpu_count = None
        return
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # pynvml raises NVMLError subclasses; a missing library too
        snap.probe_errors["gpus"] = f"NVML unavailable (no NVIDIA driver or GPU): {exc}"
        return
    try:
        try:
            snap.driver_version = _s(pynvml.nvmlSystemGetDriverVersion())
        except Exception as exc:
            snap.probe_errors["driver_version"] = str(exc)
        try:
            v = pynvml.nvmlSystemGetCudaDriverVersion()
            snap.cuda_driver_version = f"{v // 1000}.{(v % 1000) // 10}"
        except Exception as exc:
            snap.probe_errors["cuda_driver_version"] = str(exc)
        count = pynvml.nvmlDeviceGetCount()
        snap.gpu_count = count
        for i in range(count):
            info = GpuInfo(nvml_index=i)
            try:
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
            except Exception as exc:
                snap.probe_errors[f"gpus[{i}]"] = str(exc)
                snap.gpus.append(info)
                continue
            for attr, fn in (
                ("name", lambda h=h: _s(pynvml.nvmlDeviceGetName(h))),
                ("uuid", lambda h=h: _s(pynvml.nvmlDeviceGetUUID(h))),
                (
                    "memory_total_mb",
                    lambda h=h: round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**20, 1),
                ),
                ("power_limit_w", lambda h=h: pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0),
                (
                    "default_power_limit_w",
                    lambda h=h: pynvml.nvmlDeviceGetPowerManagementDefaultLimit(h) / 1000.0,
                ),
                ("mig_mode", lambda h=h: bool(pynvml.nvmlDeviceGetMigMode(h)[0])),
                ("pci_bus_id", lambda h=h: _s(pynvml.nvmlDeviceGetPciInfo(h).busId)),
                *_reproduction_probes(pynvml, h),
            ):
                try:
                    setattr(info, attr, fn())
                except Exception as exc:
                    snap.probe_errors[f"gpus[{i}].{attr}"] = str(exc) or type(exc).__name__
            snap.gpus.append(info)
        if snap.gpus:
            snap.gpu_model = snap.gpus[0].name
            if snap.gpus[0].memory_total_mb is not None:
                snap.gpu_vram_gb = round(snap.gpus[0].memory_total_mb / 1024, 1)
    except Exception as exc:
        snap.probe_errors["gpus"] = f"NVML query failed: {exc}"
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


_COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}
_CLOCK_SM, _CLOCK_MEM = 1, 2


def _nvlinks(pynvml: Any, h: Any) -> int:
    """Active NVLink links; a GPU without NVLink answers NOT_SUPPORTED on link 0 (-> 0)."""
    active = 0
    for link in range(int(getattr(pynvml, "NVML_NVLINK_MAX_LINKS", 18))):
        try:
            active += int(pynvml.nvmlDeviceGetNvLinkState(h, link) == 1)
        except Exception:
            break
    return active


def _reproduction_probes(pynvml: Any, h: Any) -> list[tuple[str, Any]]:
    """(GpuInfo field, probe) for the per-GPU state a reproduction needs."""
    return [
        ("enforced_power_limit_w", lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0),
        ("persistence_mode", lambda: pynvml.nvmlDeviceGetPersistenceMode(h) == 1),
        ("ecc_enabled", lambda: bool(pynvml.nvmlDeviceGetEccMode(h)[0])),
        (
            "compute_mode",
            lambda: _COMPUTE_MODES.get(
                int(pynvml.nvmlDeviceGetComputeMode(h)), str(pynvml.nvmlDeviceGetComputeMode(h))
            ),
        ),
        ("pstate", lambda: f"P{int(pynvml.nvmlDeviceGetPerformanceState(h))}"),
        ("temperature_c", lambda: float(pynvml.nvmlDeviceGetTemperature(h, 0))),
        ("app_sm_clock_mhz", lambda: int(pynvml.nvmlDeviceGetApplicationsClock(h, _CLOCK_SM))),
        ("app_mem_clock_mhz", lambda: int(pynvml.nvmlDeviceGetApplicationsClock(h, _CLOCK_MEM))),
        ("max_sm_clock_mhz", lambda: int(pynvml.nvmlDeviceGetMaxClockInfo(h, _CLOCK_SM))),
        ("vbios_version", lambda: _s(pynvml.nvmlDeviceGetVbiosVersion(h))),
        ("pcie_link_gen", lambda: int(pynvml.nvmlDeviceGetCurrPcieLinkGeneration(h))),
        ("pcie_link_gen_max", lambda: int(pynvml.nvmlDeviceGetMaxPcieLinkGeneration(h))),
        ("pcie_link_width", lambda: int(pynvml.nvmlDeviceGetCurrPcieLinkWidth(h))),
        ("nvlink_active_links", lambda: _nvlinks(pynvml, h)),
    ]


def _cpu_governor() -> str | None:
    try:
        return Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    except OSError:
        return None


def record_engine_libraries(snap: EnvironmentSnapshot) -> None:
    """cuDNN and NCCL versions as the engine's torch reports them, once the engine has loaded
    (torch is never imported here: only read if the engine already imported it)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        v = torch.backends.cudnn.version()
        snap.cudnn_version = str(v) if v else None
    except Exception as exc:
        snap.probe_errors["cudnn_version"] = str(exc) or type(exc).__name__
    try:
        n = torch.cuda.nccl.version() if torch.cuda.is_available() else None
        snap.nccl_version = (
            ".".join(map(str, n)) if isinstance(n, tuple) else (str(n) if n else None)
        )
    except Exception as exc:
        snap.probe_errors["nccl_version"] = str(exc) or type(exc).__name__


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def capture_environment(
    carbon_intensity_gco2_kwh: float | None = None,
    carbon_intensity_source: str | None = None,
    datacenter_pue: float | None = None,
    datacenter_pue_source: str | None = None,
    environ: Mapping[str, str] | None = None,
    probe_gpus: bool = True,
) -> EnvironmentSnapshot:
    """Capture the snapshot. Never raises; failed probes are ``None`` with a reason."""
    env = os.environ if environ is None else environ
    snap = EnvironmentSnapshot()
    for attr, fn in (
        ("hostname", socket.gethostname),
        ("os", _os_name),
        ("kernel", platform.release),
        ("cpu_model", _read_cpu_model),
        ("cpu_cores_logical", os.cpu_count),
        ("cpu_cores_physical", _physical_cores),
        ("ram_total_gb", _ram_gb),
        ("cpu_governor", _cpu_governor),
        ("packages", package_versions),
    ):
        try:
            setattr(snap, attr, fn())
        except Exception as exc:  # a probe must never fail the run
            snap.probe_errors[attr] = f"{type(exc).__name__}: {exc}"
    snap.cuda_visible_devices = env.get("CUDA_VISIBLE_DEVICES")
    snap.in_container, snap.container_image, snap.container_image_id = detect_container(env)
    snap.slurm = slurm_info(env)
    if probe_gpus:
        _probe_gpus(snap)
    else:
        snap.probe_errors["gpus"] = "not probed"
    snap.carbon_intensity_gco2_kwh = carbon_intensity_gco2_kwh
    snap.carbon_intensity_source = carbon_intensity_source
    if carbon_intensity_gco2_kwh is None:
        snap.probe_errors.setdefault(
            "carbon_intensity_gco2_kwh",
            "not set: give measurement.carbon_intensity_gco2_kwh in the user config or LLEM_CARBON_INTENSITY",
        )
    snap.datacenter_pue = datacenter_pue
    snap.datacenter_pue_source = datacenter_pue_source
    return snap


def context_from_user_config(
    user_config: Any, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Carbon intensity and PUE with their sources: env var > user config > default."""
    from llenergymeasure.config.env import env_float

    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    ci_env = env_float("LLEM_CARBON_INTENSITY", env, minimum=0)
    if ci_env is not None:
        out["carbon_intensity_gco2_kwh"], out["carbon_intensity_source"] = (
            ci_env,
            "env:LLEM_CARBON_INTENSITY",
        )
    elif user_config is not None and user_config.measurement.carbon_intensity_gco2_kwh is not None:
        out["carbon_intensity_gco2_kwh"] = user_config.measurement.carbon_intensity_gco2_kwh
        out["carbon_intensity_source"] = "user_config"
    pue_env = env_float("LLEM_DATACENTER_PUE", env, minimum=1.0)
    if pue_env is not None:
        out["datacenter_pue"], out["datacenter_pue_source"] = pue_env, "env:LLEM_DATACENTER_PUE"
    elif user_config is not None:
        out["datacenter_pue"] = user_config.measurement.datacenter_pue
        out["datacenter_pue_source"] = "user_config" if user_config.source_path else "default"
    return out
