"""CO2 estimate: energy x datacenter PUE x grid carbon intensity. An estimate, stored apart
from energy, and never more precise than its carbon-intensity figure.

The intensity comes from the user (user config or ``LLEM_CARBON_INTENSITY``, recorded in the
environment snapshot). When none is set and CodeCarbon is installed, its bundled energy-mix data
is read offline (a region's or a country's figure when the user config gives
``measurement.carbon_country_iso_code`` / ``carbon_region``, else its world average):
this module never looks anything up on the network.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from typing import Any

from llenergymeasure.energy.types import CarbonEstimate

J_PER_KWH = 3.6e6


#: countries for which CodeCarbon's bundled data has figures below the country level
REGIONAL_COUNTRIES = ("USA", "CAN", "CHN", "SWE", "NOR", "FIN")


def region_name(country_iso_code: str, region: str) -> str:
    """A region as CodeCarbon's data spells it: lower case, except the Nordic bidding zones."""
    nordic = country_iso_code.strip().upper() in ("SWE", "NOR", "FIN")
    return region.strip().upper() if nordic else region.strip().lower()


def codecarbon_regions(data: Any, code: str) -> list[str]:
    """The region names CodeCarbon's bundled data knows for a country (empty: none)."""
    if code == "USA":
        return sorted(k for k in data.get_country_emissions_data("usa") if not k.startswith("_"))
    if code == "CAN":
        return sorted(data.get_country_energy_mix_data("can"))
    if code in ("SWE", "NOR", "FIN") and hasattr(data, "get_nordic_country_energy_mix_data"):
        prefix = {"SWE": "SE", "NOR": "NO", "FIN": "FI"}[code]
        zones = data.get_nordic_country_energy_mix_data()["data"]
        return sorted(z for z in zones if z.startswith(prefix))
    if code == "CHN" and hasattr(data, "get_china_provincial_emissions_data"):
        provinces = data.get_china_provincial_emissions_data()["data"].values()
        return sorted(name for p in provinces for name in p["names"])
    return []


def codecarbon_intensity(
    country_iso_code: str | None = None, region: str | None = None
) -> tuple[float, str]:
    """(gCO2/kWh, source label) from CodeCarbon's bundled data; raises on any failure.

    ``country_iso_code`` is a 3-letter ISO 3166 code ("FRA", "USA"), as CodeCarbon's data uses;
    ``region`` a region CodeCarbon has figures for inside that country (a US state such as
    ``california``, a Canadian province, a Chinese province, a Nordic bidding zone such as
    ``SE3``). The figure is CodeCarbon's own offline private-infrastructure lookup for 1 kWh; a
    country or region its data lacks is an error here, never CodeCarbon's silent fallback to a
    wider average.
    """
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    data = DataSource()
    if not country_iso_code:
        if region:
            raise ValueError(f"a region ({region!r}) needs its country's 3-letter ISO code")
        world = data.get_carbon_intensity_per_source_data()["world_average"]
        return float(world), "codecarbon:world_average (bundled data, offline; no country given)"
    code = country_iso_code.strip().upper()
    if code not in data.get_global_energy_mix_data():
        raise KeyError(
            f"CodeCarbon has no energy-mix data for country {code!r}; give a 3-letter ISO code "
            "such as FRA, USA, DEU"
        )
    where = code
    if region:
        known = codecarbon_regions(data, code)
        if not known:
            raise ValueError(
                f"CodeCarbon has no regional data for {code}; leave the region out (regions exist "
                f"for {', '.join(REGIONAL_COUNTRIES)})"
            )
        name = region_name(code, region)
        if name not in known:
            shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            raise ValueError(
                f"CodeCarbon has no data for region {region!r} of {code}; known regions: {shown}"
            )
        region, where = name, f"{code}/{name}"
    geo = GeoMetadata(country_iso_code=code, region=region)
    kg = Emissions(data).get_private_infra_emissions(Energy.from_energy(kWh=1.0), geo)
    label = "regional" if region else "energy-mix"
    return float(kg) * 1000.0, f"codecarbon:{where} (bundled {label} data, offline)"


@functools.cache
def offline_intensity(
    country_iso_code: str | None = None, region: str | None = None
) -> tuple[float, str] | None:
    """``codecarbon_intensity`` read once per process; None when CodeCarbon is not installed or
    has no figure for the location (the harness then looks it up itself and records why).

    The study's controller reads it before it builds its runs' requests (``study/requests.py``),
    so the experiment processes get the figure in their settings and never import CodeCarbon,
    which loads pandas and pyarrow at import (about 0.8 s of every experiment process on a
    loaded 2-core VM, docs/performance.md)."""
    if importlib.util.find_spec("codecarbon") is None:
        return None
    try:
        return codecarbon_intensity(country_iso_code, region)
    except Exception:  # CodeCarbon's internals change between releases; the harness says why
        return None


def estimate_co2(
    energy_j: float | None,
    carbon_intensity_gco2_kwh: float | None,
    datacenter_pue: float | None,
    intensity_source: str | None,
    *,
    country_iso_code: str | None = None,
    region: str | None = None,
    use_codecarbon: bool = True,
) -> CarbonEstimate:
    """CO2 (g) = energy (kWh) x PUE x intensity (gCO2/kWh). PUE None means 1.0 (no overhead).

    With no intensity, CodeCarbon's offline data is used when installed (and ``use_codecarbon``),
    for ``country_iso_code`` and ``region`` when given (both then recorded in the estimate), and
    ``intensity_source`` says so; otherwise ``co2_g`` is None with the reason.
    """
    pue = 1.0 if datacenter_pue is None else float(datacenter_pue)
    if not (math.isfinite(pue) and pue >= 1.0):
        raise ValueError(
            f"datacenter_pue must be >= 1.0 (1.0 = no overhead), got {datacenter_pue!r}"
        )
    if carbon_intensity_gco2_kwh is not None and not (
        math.isfinite(carbon_intensity_gco2_kwh) and carbon_intensity_gco2_kwh >= 0
    ):
        raise ValueError(
            "carbon_intensity_gco2_kwh must be a non-negative number of gCO2 per kWh, got "
            f"{carbon_intensity_gco2_kwh!r}"
        )
    energy_kwh = None if energy_j is None or math.isnan(energy_j) else energy_j / J_PER_KWH
    intensity = carbon_intensity_gco2_kwh
    source = intensity_source
    reason: str | None = None
    # CodeCarbon's figure for the location, looked up here or by the study's controller
    looked_up = intensity is not None and (source or "").startswith("codecarbon:")
    if intensity is None:
        if use_codecarbon and importlib.util.find_spec("codecarbon") is not None:
            looked_up = True
            try:
                intensity, source = codecarbon_intensity(country_iso_code, region)
            except Exception as exc:  # CodeCarbon's internals change between releases
                reason = f"CodeCarbon's offline carbon-intensity lookup failed: {exc}"
        else:
            reason = (
                "no carbon intensity: set measurement.carbon_intensity_gco2_kwh in the user config "
                "or LLEM_CARBON_INTENSITY, or install llenergymeasure[codecarbon] for its offline "
                "data"
            )
    if energy_kwh is None:
        reason = "no energy measurement to convert"
    co2 = None
    if energy_kwh is not None and intensity is not None:
        co2 = energy_kwh * pue * intensity
    return CarbonEstimate(
        co2_g=co2,
        energy_kwh=energy_kwh,
        carbon_intensity_gco2_kwh=intensity,
        datacenter_pue=pue,
        intensity_source=source if intensity is not None else None,
        country_iso_code=country_iso_code.strip().upper()
        if looked_up and country_iso_code
        else None,
        region=region_name(country_iso_code, region)
        if looked_up and country_iso_code and region
        else None,
        unavailable_reason=reason if co2 is None else None,
    )
