"""On ``--resume``: GPUs that were lost during a run of this study must be back.

A run fails in phase ``energy`` when a measured GPU is lost during an energy window (NVML's "GPU
is lost", a GPU gone from the device count, a counter going backwards: ``energy.errors.
DeviceLostError``); its ``error.json`` lists each lost GPU's UUID under ``lost_gpus``. Resuming
while such a GPU is still missing would rerun the run on other GPUs, or on none, and compare
numbers that do not belong together, so resume refuses, naming the UUID it expected and the run
that lost it. Once the machine is fixed (the GPU listed by ``nvidia-smi`` again), resume runs the
failed run again in a new attempt folder, as it does every failed run.
"""

from __future__ import annotations

import json
from typing import Any

from llenergymeasure.energy.nvml import missing_uuids
from llenergymeasure.errors import RunnerError
from llenergymeasure.results.layout import ERROR_FILE
from llenergymeasure.study.manifest import ManifestStore


def lost_gpus(store: ManifestStore) -> dict[str, str]:
    """Each GPU UUID a failed run of this study lost, with the first run that lost it."""
    found: dict[str, str] = {}
    for entry in store.manifest.runs:
        if entry.status != "failed" or not entry.run_dir:
            continue
        try:
            data = json.loads((store.study_dir / entry.run_dir / ERROR_FILE).read_text())
        except (OSError, ValueError):
            continue  # an unreadable error.json is reported elsewhere; nothing to check here
        lost = data.get("lost_gpus") if isinstance(data, dict) else None
        for gpu in lost if isinstance(lost, list) else []:
            uuid = gpu.get("uuid") if isinstance(gpu, dict) else None
            if isinstance(uuid, str) and uuid:
                found.setdefault(uuid, entry.run_id)
    return found


def refuse_if_gpus_still_missing(store: ManifestStore, nvml_module: Any | None = None) -> None:
    """Raise ``RunnerError`` naming every lost GPU this machine's NVML still does not find.
    ``nvml_module`` replaces pynvml (tests pass the fake NVML)."""
    expected = lost_gpus(store)
    if not expected:
        return
    missing = missing_uuids(list(expected), nvml_module)
    if not missing:
        return
    lines = [
        f"{uuid}: lost during run {expected[uuid]} (its {ERROR_FILE}); now {why}"
        for uuid, why in missing.items()
    ]
    raise RunnerError(
        f"--resume {store.study_dir}: a GPU this study measured was lost and is still missing, "
        "so the failed run would be measured on other GPUs, or none:\n  "
        + "\n  ".join(lines)
        + "\nBring the GPU back (nvidia-smi must list it: a GPU that fell off the bus needs a "
        "reset or a reboot), then resume again; or start a new study on this machine's GPUs"
    )
