"""CPU package and DRAM energy from RAPL through Linux powercap (``/sys/class/powercap``).

Reported apart from GPU energy (``CpuEnergy``). Each zone's ``energy_uj`` counter wraps at
``max_energy_range_uj``; one wrap inside a window is corrected, several cannot be seen (at
~250 W a 262 kJ range wraps after ~17 minutes), which ``docs/methodology.md`` notes. Since Linux
5.10 the counters are readable by root only (CVE-2020-8694): unreadable means ``available:
false`` with the reason, never a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from llenergymeasure.energy.types import CpuEnergy

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
_ZONE = re.compile(r"^intel-rapl:\d+(:\d+)?$")


@dataclass(frozen=True)
class RaplZone:
    path: Path
    label: str  # "package-0" or "package-0/dram"
    kind: str  # "package", "dram", "psys", or another zone name
    max_range_uj: int


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def discover_zones(root: str | Path | None = None) -> tuple[list[RaplZone], str | None]:
    """The package, DRAM and platform zones under ``root``; or ([], why not)."""
    base = Path(root or DEFAULT_POWERCAP_ROOT)
    if not base.is_dir():
        return [], (
            f"{base} does not exist: no RAPL here (not an Intel/AMD x86 host, powercap driver not "
            "loaded, or /sys not mounted in this container)"
        )
    dirs = sorted(p for p in base.iterdir() if _ZONE.match(p.name))
    if not dirs:
        return [], f"{base} has no intel-rapl zones (RAPL not exposed on this machine)"
    names: dict[str, str] = {}
    zones: list[RaplZone] = []
    for d in dirs:
        try:
            names[d.name] = (d / "name").read_text().strip()
        except OSError:
            names[d.name] = d.name
    for d in dirs:
        name = names[d.name]
        parts = d.name.split(":")
        if len(parts) == 3:  # sub-zone: keep DRAM only (core/uncore are inside the package)
            if name != "dram":
                continue
            parent = names.get(":".join(parts[:2]), ":".join(parts[:2]))
            label, kind = f"{parent}/dram", "dram"
        else:
            label = name
            kind = "package" if name.startswith("package") else name
        try:
            max_range = _read_int(d / "max_energy_range_uj")
        except (OSError, ValueError):
            max_range = 0
        zones.append(RaplZone(d, label, kind, max_range))
    return zones, None


def _probe(zones: list[RaplZone]) -> str | None:
    for z in zones:
        try:
            _read_int(z.path / "energy_uj")
        except PermissionError:
            return (
                f"permission denied reading {z.path / 'energy_uj'}: RAPL counters are root-only "
                "since Linux 5.10; run as root or make energy_uj readable"
            )
        except (OSError, ValueError) as exc:
            return f"cannot read {z.path / 'energy_uj'}: {exc}"
    return None


def rapl_status(root: str | Path | None = None) -> tuple[bool, str]:
    """(readable here, description or reason) for ``llem config``."""
    zones, why = discover_zones(root)
    if why:
        return False, why
    problem = _probe(zones)
    if problem:
        return False, problem
    return True, "readable: " + ", ".join(z.label for z in zones)


class RaplMeter:
    """CPU energy over a window: ``start()``, then ``stop() -> CpuEnergy``."""

    def __init__(self, root: str | Path | None = None):
        self.zones, why = discover_zones(root)
        if why is None:
            why = _probe(self.zones)
        self.available = why is None
        self.unavailable_reason = why
        self._start: list[int] | None = None

    def _read(self) -> list[int]:
        return [_read_int(z.path / "energy_uj") for z in self.zones]

    def start(self) -> None:
        if not self.available:
            return
        try:
            self._start = self._read()
        except (OSError, ValueError) as exc:
            self.available = False
            self.unavailable_reason = f"RAPL read failed at window start: {exc}"

    def stop(self) -> CpuEnergy:
        if not self.available or self._start is None:
            return CpuEnergy(
                available=False,
                unavailable_reason=self.unavailable_reason or "stop() without start()",
            )
        try:
            end = self._read()
        except (OSError, ValueError) as exc:
            return CpuEnergy(
                available=False, unavailable_reason=f"RAPL read failed at window end: {exc}"
            )
        start, self._start = self._start, None
        domains: dict[str, float] = {}
        package = dram = 0.0
        has_dram = False
        for z, a, b in zip(self.zones, start, end, strict=False):
            delta = b - a
            if delta < 0:  # one wrap of the counter
                delta += z.max_range_uj
            joules = delta / 1e6
            domains[z.label] = joules
            if z.kind == "package":
                package += joules
            elif z.kind == "dram":
                dram += joules
                has_dram = True
        return CpuEnergy(
            available=True,
            package_j=package if any(z.kind == "package" for z in self.zones) else None,
            dram_j=dram if has_dram else None,
            domains=domains,
        )
