"""RAPL by hand over powercap trees built in tmp_path: which zones count, their labels and kinds,
joules from microjoule counters (one wrap, no wrap at a zero delta), and every reason a reading is
unavailable, word for word where the reason is what the user reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from llenergymeasure.energy import rapl as rapl_module
from llenergymeasure.energy.rapl import RaplMeter, RaplZone, discover_zones, rapl_status


def zone(
    root: Path, name: str, label: str | None, energy_uj: int | str, max_uj: int | str = 1_000_000
) -> Path:
    d = root / name
    d.mkdir(parents=True)
    if label is not None:
        (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def set_uj(d: Path, value: int) -> None:
    (d / "energy_uj").write_text(f"{value}\n")


def test_zones_labels_and_kinds(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:1", "package-1", 0, 2_000)
    zone(tmp_path, "intel-rapl:0", "package-0", 0, 1_000)
    zone(tmp_path, "intel-rapl:0:0", "core", 0)  # inside the package: not a zone of its own
    zone(tmp_path, "intel-rapl:0:1", "dram", 0, 3_000)
    zone(tmp_path, "intel-rapl:2", "psys", 0, 4_000)
    zone(tmp_path, "intel-rapl-mmio:0", "package-0", 0)  # another driver's tree: ignored
    zone(tmp_path, "intel-rapl:0:1:0", "dram", 0)  # deeper than a sub-zone: ignored
    (tmp_path / "dtpm").mkdir()
    zones, why = discover_zones(tmp_path)
    assert why is None
    assert zones == [
        RaplZone(tmp_path / "intel-rapl:0", "package-0", "package", 1_000),
        RaplZone(tmp_path / "intel-rapl:0:1", "package-0/dram", "dram", 3_000),
        RaplZone(tmp_path / "intel-rapl:1", "package-1", "package", 2_000),
        RaplZone(tmp_path / "intel-rapl:2", "psys", "psys", 4_000),
    ]
    assert rapl_status(tmp_path) == (True, "readable: package-0, package-0/dram, package-1, psys")


def test_unnamed_zones_and_unreadable_ranges(tmp_path: Path) -> None:
    # a zone without a name file is labelled by its directory; a DRAM sub-zone whose package
    # directory is missing is labelled by the package's directory name
    zone(tmp_path, "intel-rapl:0", None, 0, "garbage")
    zone(tmp_path, "intel-rapl:1:0", "dram", 0)
    (tmp_path / "intel-rapl:1:0" / "max_energy_range_uj").unlink()
    zones, why = discover_zones(tmp_path)
    assert why is None
    assert zones == [
        RaplZone(tmp_path / "intel-rapl:0", "intel-rapl:0", "intel-rapl:0", 0),
        RaplZone(tmp_path / "intel-rapl:1:0", "intel-rapl:1/dram", "dram", 0),
    ]


def test_no_tree_or_no_zones_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "powercap"
    assert discover_zones(missing) == (
        [],
        f"{missing} does not exist: no RAPL here (not an Intel/AMD x86 host, powercap driver not "
        "loaded, or /sys not mounted in this container)",
    )
    zone(tmp_path, "intel-rapl-mmio:0", "package-0", 0)
    assert discover_zones(tmp_path) == (
        [],
        f"{tmp_path} has no intel-rapl zones (RAPL not exposed on this machine)",
    )
    assert rapl_status(missing) == (False, discover_zones(missing)[1])
    meter = RaplMeter(missing)
    assert not meter.available and meter.zones == []
    meter.start()
    stopped = meter.stop()
    assert not stopped.available and stopped.unavailable_reason == discover_zones(missing)[1]


def test_default_root_is_sysfs_powercap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert rapl_module.DEFAULT_POWERCAP_ROOT == "/sys/class/powercap"
    monkeypatch.setattr(rapl_module, "DEFAULT_POWERCAP_ROOT", str(tmp_path / "sys"))
    assert discover_zones(None)[1] is not None
    assert str(tmp_path / "sys") in (discover_zones(None)[1] or "")
    # an explicit root wins over the default
    zone(tmp_path, "intel-rapl:0", "package-0", 0)
    assert [z.label for z in discover_zones(tmp_path)[0]] == ["package-0"]


def test_unreadable_counters_say_which_file_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 0)
    dram = zone(tmp_path, "intel-rapl:0:1", "dram", "not a number")
    status = rapl_status(tmp_path)
    assert status[0] is False
    assert status[1] == (
        f"cannot read {dram / 'energy_uj'}: invalid literal for int() with base 10: 'not a number'"
    )
    set_uj(dram, 0)
    (pkg / "energy_uj").unlink()
    meter = RaplMeter(tmp_path)
    assert not meter.available
    assert (meter.unavailable_reason or "").startswith(f"cannot read {pkg / 'energy_uj'}: ")
    set_uj(pkg, 0)

    def denied(path: Path) -> int:  # root reads anything, so permission is simulated here
        if path == dram / "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return int(path.read_text())

    monkeypatch.setattr(rapl_module, "_read_int", denied)
    assert rapl_status(tmp_path) == (
        False,
        f"permission denied reading {dram / 'energy_uj'}: RAPL counters are root-only since "
        "Linux 5.10; run as root or make energy_uj readable",
    )


def test_joules_per_domain_with_one_wrap_and_a_flat_counter(tmp_path: Path) -> None:
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 999_000, 1_000_000)
    d0 = zone(tmp_path, "intel-rapl:0:1", "dram", 5_000, 1_000_000)
    p1 = zone(tmp_path, "intel-rapl:1", "package-1", 10_000_000, 262_143_328_850)
    ps = zone(tmp_path, "intel-rapl:2", "psys", 7, 1_000_000)
    meter = RaplMeter(tmp_path)
    assert meter.available and meter.unavailable_reason is None
    meter.start()
    set_uj(p0, 1_500)  # wrapped: 999000 -> 1000000 (1000 uJ) -> 1500: 2500 uJ = 0.0025 J
    set_uj(d0, 5_000)  # no change: 0 J, not a wrap
    set_uj(p1, 22_500_000)  # 12.5 J
    set_uj(ps, 3_000_007)  # 3 J, the platform: neither package nor DRAM
    e = meter.stop()
    assert e.available and e.unavailable_reason is None
    assert e.domains == {
        "package-0": pytest.approx(0.0025, rel=1e-12),
        "package-0/dram": 0.0,
        "package-1": pytest.approx(12.5, rel=1e-12),
        "psys": pytest.approx(3.0, rel=1e-12),
    }
    assert e.package_j == pytest.approx(12.5025, rel=1e-12)  # both packages
    assert e.dram_j == 0.0  # a DRAM zone read 0 J: zero, not "no DRAM"


def test_package_and_dram_are_none_without_their_zones(tmp_path: Path) -> None:
    ps = zone(tmp_path, "intel-rapl:0", "psys", 100)
    meter = RaplMeter(tmp_path)
    meter.start()
    set_uj(ps, 2_000_100)
    e = meter.stop()
    assert e.available and e.domains == {"psys": pytest.approx(2.0, rel=1e-12)}
    assert e.package_j is None and e.dram_j is None


def test_a_window_is_used_once_and_stop_needs_start(tmp_path: Path) -> None:
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 0)
    meter = RaplMeter(tmp_path)
    never = meter.stop()
    assert not never.available and never.unavailable_reason == "stop() without start()"
    meter.start()
    set_uj(p0, 1_000_000 - 1)
    assert meter.stop().package_j == pytest.approx(0.999999, rel=1e-12)
    again = meter.stop()  # the window was consumed by the first stop()
    assert not again.available and again.unavailable_reason == "stop() without start()"
    meter.start()  # a second window starts from the counter's current value
    set_uj(p0, 1_000_000 - 1)
    assert meter.stop().package_j == 0.0


def test_read_failures_inside_a_window(tmp_path: Path) -> None:
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 0)
    meter = RaplMeter(tmp_path)
    assert meter.available
    (p0 / "energy_uj").write_text("oops\n")
    meter.start()
    assert meter.available is False
    assert meter.unavailable_reason == (
        "RAPL read failed at window start: invalid literal for int() with base 10: 'oops'"
    )
    failed = meter.stop()
    assert not failed.available and failed.unavailable_reason == meter.unavailable_reason

    set_uj(p0, 0)
    late = RaplMeter(tmp_path)
    late.start()
    (p0 / "energy_uj").write_text("\n")
    end = late.stop()
    assert not end.available
    assert end.unavailable_reason == (
        "RAPL read failed at window end: invalid literal for int() with base 10: ''"
    )


def test_two_sockets_add_their_packages_and_their_dram(tmp_path: Path) -> None:
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 0)
    d0 = zone(tmp_path, "intel-rapl:0:0", "dram", 0)
    p1 = zone(tmp_path, "intel-rapl:1", "package-1", 0)
    d1 = zone(tmp_path, "intel-rapl:1:0", "dram", 0)
    meter = RaplMeter(tmp_path)
    meter.start()
    for d, uj in ((p0, 40_000_000), (d0, 3_000_000), (p1, 35_000_000), (d1, 2_500_000)):
        set_uj(d, uj)
    e = meter.stop()
    assert e.package_j == pytest.approx(75.0, rel=1e-12)  # 40 J + 35 J
    assert e.dram_j == pytest.approx(5.5, rel=1e-12)  # 3 J + 2.5 J
    assert e.domains == {
        "package-0": pytest.approx(40.0),
        "package-0/dram": pytest.approx(3.0),
        "package-1": pytest.approx(35.0),
        "package-1/dram": pytest.approx(2.5),
    }
