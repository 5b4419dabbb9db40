"""``capture_environment`` never fails a run: each probe that raises leaves its field empty and a
reason in ``probe_errors``. Here the probes are made to fail on purpose."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from llenergymeasure.environment import snapshot as snapshot_mod
from llenergymeasure.environment.snapshot import capture_environment


def _boom(*_: Any, **__: Any) -> Any:
    raise OSError("probe failed on purpose")


def test_failing_host_probes_become_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_mod.socket, "gethostname", _boom)
    monkeypatch.setattr(snapshot_mod, "_read_cpu_model", _boom)
    monkeypatch.setattr(snapshot_mod, "package_versions", _boom)
    snap = capture_environment(probe_gpus=False)
    assert snap.hostname is None and snap.cpu_model is None and snap.packages == {}
    for field in ("hostname", "cpu_model", "packages"):
        assert snap.probe_errors[field] == "OSError: probe failed on purpose"
    assert snap.cpu_cores_logical  # the probes that work still fill their fields
    assert snap.probe_errors["gpus"] == "not probed"


def test_nvml_that_cannot_start_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    pynvml = pytest.importorskip("pynvml")
    monkeypatch.setattr(pynvml, "nvmlInit", _boom)
    snap = capture_environment()
    assert snap.gpus == [] and snap.gpu_model is None
    assert snap.probe_errors["gpus"] == (
        "NVML unavailable (no NVIDIA driver or GPU): probe failed on purpose"
    )


def test_a_gpu_whose_queries_fail_is_listed_with_the_reasons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One GPU: name and UUID answer, every other query raises; the driver query raises too."""
    pynvml = pytest.importorskip("pynvml")
    calls = {"shutdown": 0}
    answers = {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1),
        "nvmlSystemGetDriverVersion": _boom,
        "nvmlSystemGetCudaDriverVersion": lambda: 12040,
        "nvmlDeviceGetCount": lambda: 1,
        "nvmlDeviceGetHandleByIndex": lambda i: SimpleNamespace(index=i),
        "nvmlDeviceGetName": lambda h: b"Fake H200",
        "nvmlDeviceGetUUID": lambda h: "GPU-1234",
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=141 * 2**30),
        "nvmlDeviceGetPowerManagementLimit": _boom,
        "nvmlDeviceGetPowerManagementDefaultLimit": _boom,
        "nvmlDeviceGetMigMode": _boom,
        "nvmlDeviceGetPciInfo": _boom,
    }
    for name, fn in answers.items():
        monkeypatch.setattr(pynvml, name, fn)
    snap = capture_environment()
    assert snap.gpu_count == 1 and len(snap.gpus) == 1
    gpu = snap.gpus[0]
    assert (gpu.name, gpu.uuid, gpu.memory_total_mb) == ("Fake H200", "GPU-1234", 144384.0)
    assert gpu.power_limit_w is None and gpu.pci_bus_id is None
    assert snap.gpu_model == "Fake H200" and snap.gpu_vram_gb == 141.0
    assert snap.cuda_driver_version == "12.4"
    assert snap.probe_errors["driver_version"] == "probe failed on purpose"
    for attr in ("power_limit_w", "default_power_limit_w", "mig_mode", "pci_bus_id"):
        assert snap.probe_errors[f"gpus[0].{attr}"] == "probe failed on purpose"
    assert "gpus" not in snap.probe_errors
    assert calls["shutdown"] == 1  # NVML released even though queries failed


def test_a_failing_device_count_is_a_reason_and_nvml_is_released(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pynvml = pytest.importorskip("pynvml")
    released = []
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: released.append(True))
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: "580.1")
    monkeypatch.setattr(pynvml, "nvmlSystemGetCudaDriverVersion", lambda: 13000)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", _boom)
    snap = capture_environment()
    assert snap.driver_version == "580.1" and snap.cuda_driver_version == "13.0"
    assert snap.probe_errors["gpus"] == "NVML query failed: probe failed on purpose"
    assert released == [True]
