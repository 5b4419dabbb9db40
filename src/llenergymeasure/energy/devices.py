"""CUDA device index -> NVML device: the one place that reads ``CUDA_VISIBLE_DEVICES``.

The process sees GPUs through CUDA, which renumbers them by ``CUDA_VISIBLE_DEVICES``; NVML
numbers every GPU on the machine in PCI bus order and ignores that variable. A meter reading the
wrong NVML index measures someone else's GPU and reports a plausible, wrong number, so every
meter maps its devices here and nowhere else.

``CUDA_VISIBLE_DEVICES`` entries may be integers, GPU UUIDs (``GPU-...``, a unique prefix is
enough, as CUDA accepts) or MIG UUIDs (``MIG-...``). CUDA stops reading the list at the first
entry it cannot parse; so does this module. A MIG slice maps to its parent GPU: NVML has no
energy counter per slice, so the energy is the whole GPU's and a warning says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from llenergymeasure.energy.errors import DeviceMappingError, NvmlError
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.types import ValidityWarning

_INT = re.compile(r"^\d+$")


@dataclass(frozen=True)
class DeviceTarget:
    """One GPU a meter measures: its CUDA index (as the process sees it) and NVML index."""

    cuda_index: int
    nvml_index: int
    uuid: str | None = None
    name: str | None = None
    mig_uuid: str | None = None


@dataclass
class DeviceMapping:
    """The result of mapping: the targets and any warnings about the mapping itself."""

    targets: list[DeviceTarget]
    warnings: list[ValidityWarning] = field(default_factory=list)

    @property
    def nvml_indices(self) -> list[int]:
        return [t.nvml_index for t in self.targets]


def parse_cuda_visible_devices(value: str | None) -> list[str] | None:
    """The entries CUDA would honour, or None when the variable is unset (all GPUs visible).

    Like CUDA, parsing stops at the first invalid entry (``-1``, text that is neither an integer
    nor a GPU-/MIG- UUID); an empty value hides every GPU.
    """
    if value is None:
        return None
    entries: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if _INT.match(entry) or entry.startswith(("GPU-", "MIG-")):
            entries.append(entry)
        else:
            break
    return entries


def _nvml_index(
    cuda_index: int,
    entries: list[str] | None,
    raw: str | None,
    count: int,
    nvml: Nvml,
    all_uuids: Callable[[], list[str]],
) -> tuple[int, str | None]:
    """(NVML index, MIG UUID or None) of one CUDA index, or DeviceMappingError saying why not."""
    mig_uuid: str | None = None
    if entries is None:
        nvml_index = cuda_index
        if nvml_index >= count:
            raise DeviceMappingError(
                f"CUDA device {cuda_index} does not exist: NVML sees {count} GPU(s) and "
                "CUDA_VISIBLE_DEVICES is unset; use an index below "
                f"{count}"
            )
    else:
        if cuda_index >= len(entries):
            raise DeviceMappingError(
                f"CUDA device {cuda_index} is not visible: CUDA_VISIBLE_DEVICES={raw!r} exposes "
                f"{len(entries)} device(s) ({', '.join(entries) or 'none'}); use an index below "
                f"{len(entries)} or widen CUDA_VISIBLE_DEVICES"
            )
        entry = entries[cuda_index]
        if _INT.match(entry):
            nvml_index = int(entry)
            if nvml_index >= count:
                raise DeviceMappingError(
                    f"CUDA_VISIBLE_DEVICES={raw!r} names GPU {nvml_index} but NVML sees only "
                    f"{count} GPU(s) (0..{count - 1})"
                )
        elif entry.startswith("GPU-"):
            matches = [i for i, u in enumerate(all_uuids()) if u.startswith(entry)]
            if len(matches) != 1:
                raise DeviceMappingError(
                    f"CUDA_VISIBLE_DEVICES entry {entry!r} matches "
                    f"{'no' if not matches else len(matches)} GPU UUID(s); NVML sees "
                    f"{', '.join(all_uuids()) or 'none'}"
                )
            nvml_index = matches[0]
        else:  # MIG-
            try:
                handle = nvml.handle_by_uuid(entry)
                if nvml.is_mig_handle(handle):
                    handle = nvml.parent_of_mig(handle)
                nvml_index = nvml.index_of(handle)
            except NvmlError as exc:
                raise DeviceMappingError(
                    f"CUDA_VISIBLE_DEVICES entry {entry!r} (a MIG device) cannot be resolved "
                    f"to its GPU through NVML: {exc}"
                ) from exc
            mig_uuid = entry
    return nvml_index, mig_uuid


def _device_order_warning(
    entries: list[str] | None, environ: Mapping[str, str], nvml: Nvml, count: int
) -> ValidityWarning | None:
    """``device_order`` when integer indices may name different GPUs under CUDA and NVML."""
    if (entries is None or all(_INT.match(e) for e in entries)) and environ.get(
        "CUDA_DEVICE_ORDER", ""
    ).upper() != "PCI_BUS_ID":
        try:
            models = {nvml.name(i) for i in range(count)}
        except NvmlError:
            models = set()
        if len(models) > 1:
            return ValidityWarning(
                code="device_order",
                message=(
                    "this machine mixes GPU models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: "
                    "CUDA numbers GPUs fastest-first, NVML by PCI bus, so integer indices may "
                    "name different GPUs; set CUDA_DEVICE_ORDER=PCI_BUS_ID or use GPU UUIDs"
                ),
                details={"models": sorted(models)},
            )
    return None


def resolve_devices(
    cuda_devices: Sequence[int], nvml: Nvml, environ: Mapping[str, str]
) -> DeviceMapping:
    """Map CUDA indices to NVML devices through ``CUDA_VISIBLE_DEVICES``.

    Raises DeviceMappingError naming the index, the variable's value and what is visible when
    an index cannot be mapped. Two CUDA devices on one physical GPU (MIG slices) are measured
    once, under the first CUDA index.
    """
    raw = environ.get("CUDA_VISIBLE_DEVICES")
    entries = parse_cuda_visible_devices(raw)
    try:
        count = nvml.device_count()
    except NvmlError as exc:
        raise DeviceMappingError(f"cannot count GPUs through NVML: {exc}") from exc

    uuids: list[str] | None = None

    def all_uuids() -> list[str]:
        nonlocal uuids
        if uuids is None:
            uuids = [nvml.uuid(i) for i in range(count)]
        return uuids

    targets: list[DeviceTarget] = []
    warnings: list[ValidityWarning] = []
    seen: set[int] = set()
    for cuda_index in cuda_devices:
        if cuda_index < 0:
            raise DeviceMappingError(f"CUDA device index {cuda_index} is negative; use 0, 1, ...")
        nvml_index, mig_uuid = _nvml_index(cuda_index, entries, raw, count, nvml, all_uuids)
        if nvml_index in seen:
            warnings.append(
                ValidityWarning(
                    code="shared_gpu",
                    message=(
                        f"CUDA device {cuda_index} is on GPU {nvml_index}, already measured for "
                        "another CUDA device; it is counted once"
                    ),
                    severity="info",
                    device=nvml_index,
                )
            )
            continue
        seen.add(nvml_index)
        uuid = name = None
        try:
            uuid = nvml.uuid(nvml_index)
            name = nvml.name(nvml_index)
        except NvmlError:
            pass
        targets.append(DeviceTarget(cuda_index, nvml_index, uuid, name, mig_uuid))
        if mig_uuid is not None:
            warnings.append(
                ValidityWarning(
                    code="mig_whole_gpu",
                    message=(
                        f"CUDA device {cuda_index} is a MIG slice ({mig_uuid}); NVML has no energy "
                        f"counter per slice, so this is the energy of the whole GPU {nvml_index}, "
                        "including other slices' work"
                    ),
                    device=nvml_index,
                    details={"mig_uuid": mig_uuid},
                )
            )

    w = _device_order_warning(entries, environ, nvml, count)
    if w is not None:
        warnings.append(w)
    return DeviceMapping(targets, warnings)
