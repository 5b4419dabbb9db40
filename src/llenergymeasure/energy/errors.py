"""Typed errors of the energy layer.

NVML reports failures as integer return codes wrapped in ``pynvml.NVMLError`` subclasses whose
text ("Not Supported", "Unknown Error") says nothing about which call, which GPU, or what to do.
The device layer (``energy.nvml``) turns each into one of these, naming the call, the GPU and a
remedy, so a failed experiment's JSON tells a researcher what happened.
"""

from __future__ import annotations

from llenergymeasure.errors import ExperimentError, LLEMError

# NVML return codes (nvml.h); kept here so the layer does not need pynvml to classify an error.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_GPU_NOT_FOUND = 28
NVML_ERROR_UNKNOWN = 999

#: codes that mean the GPU stopped answering: fell off the bus (Xid 79), needs a reset, is gone
#: from the machine, or the driver no longer knows what it is. Not a reading the GPU lacks (those
#: fail when the meter is built): a window that meets one of these cannot give a number.
DEVICE_LOST_CODES = frozenset(
    {
        NVML_ERROR_GPU_IS_LOST,
        NVML_ERROR_RESET_REQUIRED,
        NVML_ERROR_GPU_NOT_FOUND,
        NVML_ERROR_UNKNOWN,
    }
)

_HINTS = {
    NVML_ERROR_NOT_SUPPORTED: "this GPU or driver does not provide that reading",
    NVML_ERROR_NO_PERMISSION: "run with permission to query the GPU (root, or the device nodes readable)",
    NVML_ERROR_DRIVER_NOT_LOADED: "load the NVIDIA kernel driver (nvidia-smi should work)",
    NVML_ERROR_LIBRARY_NOT_FOUND: (
        "install the NVIDIA driver, or in a container run with the NVIDIA container toolkit "
        "(--gpus / --runtime nvidia) so libnvidia-ml.so is mounted"
    ),
    NVML_ERROR_FUNCTION_NOT_FOUND: "the driver is older than this call; update the NVIDIA driver",
    NVML_ERROR_GPU_IS_LOST: "the GPU fell off the bus; the machine needs attention (nvidia-smi, dmesg)",
    NVML_ERROR_RESET_REQUIRED: "the GPU needs a reset (nvidia-smi -r, or a reboot) before it can be used",
    NVML_ERROR_GPU_NOT_FOUND: "the GPU is no longer on the machine; check nvidia-smi and dmesg",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: (
        "the NVML library and the kernel driver differ in version; reboot or reload the driver"
    ),
    NVML_ERROR_TIMEOUT: "the driver timed out; retry, and check nvidia-smi",
}


class EnergyMeterError(LLEMError):
    """An energy meter was asked for explicitly but cannot work here, or failed while measuring."""

    exit_code = 1


class NvmlError(EnergyMeterError):
    """An NVML call failed. ``call`` is the NVML function, ``code`` its return code."""

    def __init__(self, call: str, code: int | None, detail: str, device: int | None = None):
        self.call = call
        self.code = code
        self.device = device
        self.detail = detail
        where = f" on GPU {device} (NVML index)" if device is not None else ""
        hint = _HINTS.get(code or -1)
        text = f"NVML call {call}{where} failed: {detail}"
        if code is not None:
            text += f" (NVML code {code})"
        if hint:
            text += f"; {hint}"
        super().__init__(text)


class NvmlNotSupportedError(NvmlError):
    """The GPU or driver does not provide this reading (e.g. no energy counter before Volta)."""


class NvmlUnavailableError(NvmlError):
    """NVML itself cannot start: no library, no driver, or no permission."""


class NvmlDeviceLostError(NvmlError, ExperimentError):
    """A GPU stopped answering NVML (``DEVICE_LOST_CODES``). Also an ``ExperimentError`` of phase
    ``energy``: wherever it is raised in a run (a window's counter read, the sampler, a baseline)
    the run fails there, with this NVML error named in ``error.json``."""

    def __init__(self, call: str, code: int | None, detail: str, device: int | None = None):
        super().__init__(call, code, detail, device)
        self.phase = "energy"


class DeviceLostError(EnergyMeterError, ExperimentError):
    """A measured GPU was lost during a meter's window: an NVML or Zeus error, the GPU gone from
    the device count, or its energy counter going backwards (a GPU reset or driver reload under
    the engine). The run fails in phase ``energy``; ``lost_gpus`` (each ``{"uuid", "nvml_index",
    "reason"}``) goes into ``error.json`` so that ``--resume`` can check the GPUs are back."""

    def __init__(self, message: str, lost_gpus: list[dict[str, object]]):
        self.lost_gpus = lost_gpus
        ExperimentError.__init__(self, message, phase="energy")

    @classmethod
    def of(cls, lost: list[tuple[int | None, str | None, str]]) -> DeviceLostError:
        """The error for GPUs lost in a window, from ``(nvml_index, uuid, what was seen)``; one
        line per GPU (the first thing seen on it)."""
        records: list[dict[str, object]] = []
        lines: list[str] = []
        for index, uuid, reason in lost:
            if any(r["nvml_index"] == index and r["uuid"] == uuid for r in records):
                continue
            records.append({"uuid": uuid, "nvml_index": index, "reason": reason})
            where = f"GPU {index if index is not None else '?'} ({uuid or 'UUID unknown'})"
            lines.append(f"{where}: {reason}")
        return cls(
            "a measured GPU was lost during an energy window, so this run has no energy figure:"
            "\n  " + "\n  ".join(lines) + "\nThe run is failed; the study goes on with the next "
            "run (or stops, with fail_fast). Check the machine (nvidia-smi, dmesg for Xid "
            "errors): `llem run --resume` refuses while a lost GPU is still missing",
            records,
        )


class DeviceMappingError(EnergyMeterError):
    """A CUDA device index cannot be mapped to an NVML device (CUDA_VISIBLE_DEVICES, MIG, ...)."""

    exit_code = 2


def nvml_error_class(code: int | None) -> type[NvmlError]:
    """The typed error for an NVML return code."""
    if code == NVML_ERROR_NOT_SUPPORTED:
        return NvmlNotSupportedError
    if code in DEVICE_LOST_CODES:
        return NvmlDeviceLostError
    if code in (
        NVML_ERROR_LIBRARY_NOT_FOUND,
        NVML_ERROR_DRIVER_NOT_LOADED,
        NVML_ERROR_NO_PERMISSION,
        NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    ):
        return NvmlUnavailableError
    return NvmlError
