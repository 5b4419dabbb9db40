"""Issue 19: the per-GPU facts a reproduction needs, read through pynvml's real function names
(checked against nvidia-ml-py here and on the H200; see docs/validation.md)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from llenergymeasure.environment.snapshot import capture_environment


def _boom(*_: object) -> None:
    raise RuntimeError("not supported")


def test_per_gpu_reproduction_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    pynvml = pytest.importorskip("pynvml")

    def nvlink_state(h: object, link: int) -> int:
        if link >= 3:
            raise RuntimeError("no such link")
        return 1 if link < 2 else 0  # links 0 and 1 active, link 2 down

    answers = {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlSystemGetDriverVersion": lambda: "580.159.04",
        "nvmlSystemGetCudaDriverVersion": lambda: 13000,
        "nvmlDeviceGetCount": lambda: 1,
        "nvmlDeviceGetHandleByIndex": lambda i: SimpleNamespace(index=i),
        "nvmlDeviceGetName": lambda h: b"NVIDIA H200",
        "nvmlDeviceGetUUID": lambda h: "GPU-1",
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=2**30),
        "nvmlDeviceGetPowerManagementLimit": lambda h: 700_000,
        "nvmlDeviceGetPowerManagementDefaultLimit": lambda h: 700_000,
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: 650_000,
        "nvmlDeviceGetMigMode": lambda h: [0, 0],
        "nvmlDeviceGetPciInfo": lambda h: SimpleNamespace(busId=b"0000:00:06.0"),
        "nvmlDeviceGetPersistenceMode": lambda h: 1,
        "nvmlDeviceGetEccMode": lambda h: [1, 1],
        "nvmlDeviceGetComputeMode": lambda h: 3,
        "nvmlDeviceGetPerformanceState": lambda h: 2,
        "nvmlDeviceGetTemperature": lambda h, sensor: 41,
        "nvmlDeviceGetApplicationsClock": lambda h, clock: {1: 1980, 2: 3201}[clock],
        "nvmlDeviceGetMaxClockInfo": lambda h, clock: 1980,
        "nvmlDeviceGetVbiosVersion": lambda h: b"96.00.A5.00.1A",
        "nvmlDeviceGetCurrPcieLinkGeneration": lambda h: 5,
        "nvmlDeviceGetMaxPcieLinkGeneration": lambda h: 5,
        "nvmlDeviceGetCurrPcieLinkWidth": lambda h: 16,
        "nvmlDeviceGetNvLinkState": nvlink_state,
    }
    for name, fn in answers.items():
        monkeypatch.setattr(pynvml, name, fn)
    gpu = capture_environment().gpus[0]
    assert (gpu.power_limit_w, gpu.enforced_power_limit_w) == (700.0, 650.0)
    assert (gpu.persistence_mode, gpu.ecc_enabled, gpu.compute_mode) == (
        True,
        True,
        "exclusive_process",
    )
    assert (gpu.pstate, gpu.temperature_c) == ("P2", 41.0)
    assert (gpu.app_sm_clock_mhz, gpu.app_mem_clock_mhz, gpu.max_sm_clock_mhz) == (1980, 3201, 1980)
    assert gpu.vbios_version == "96.00.A5.00.1A"
    assert (gpu.pcie_link_gen, gpu.pcie_link_gen_max, gpu.pcie_link_width) == (5, 5, 16)
    assert gpu.nvlink_active_links == 2

    # a GPU that answers none of them: every field None with its reason, NVLink 0 (no links)
    for name in (
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetPersistenceMode",
        "nvmlDeviceGetVbiosVersion",
        "nvmlDeviceGetNvLinkState",
    ):
        monkeypatch.setattr(pynvml, name, _boom)
    snap = capture_environment()
    gpu = snap.gpus[0]
    assert gpu.enforced_power_limit_w is None and gpu.persistence_mode is None
    assert snap.probe_errors["gpus[0].vbios_version"] == "not supported"
    assert gpu.nvlink_active_links == 0
