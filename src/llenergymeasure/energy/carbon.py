"""CO2 estimate: energy x datacenter PUE x grid carbon intensity. An estimate, stored apart
from energy, and never more precise than its carbon-intensity figure.

The intensity comes from the user (user config or ``LLEM_CARBON_INTENSITY``, recorded in the
environment snapshot). When none is set and CodeCarbon is installed, its bundled energy-mix data
is read offline (a country's figure when ``country_iso_code`` is given, else its world average):
this module never looks anything up on the network.
"""

from __future__ import annotations

import importlib.util
import math

from llenergymeasure.energy.types import CarbonEstimate

J_PER_KWH = 3.6e6


def codecarbon_intensity(country_iso_code: str | None = None) -> tuple[float, str]:
    """(gCO2/kWh, source label) from CodeCarbon's bundled data; raises on any failure.

    ``country_iso_code`` is a 3-letter ISO 3166 code ("FRA", "USA"), as CodeCarbon's data uses.
    """
    from codecarbon.core.emissions import Emissions
    from codecarbon.input import DataSource

    data = DataSource()
    if country_iso_code:
        code = country_iso_code.strip().upper()
        mix = data.get_global_energy_mix_data()
        if code not in mix:
            raise KeyError(
                f"CodeCarbon has no energy-mix data for country {code!r}; give a 3-letter ISO code "
                "such as FRA, USA, DEU"
            )
        rate = Emissions._global_energy_mix_to_emissions_rate(mix[code])
        return rate.kgs_per_kWh * 1000.0, f"codecarbon:{code} (bundled energy-mix data, offline)"
    world = data.get_carbon_intensity_per_source_data()["world_average"]
    return float(world), "codecarbon:world_average (bundled data, offline; no country given)"


def estimate_co2(
    energy_j: float | None,
    carbon_intensity_gco2_kwh: float | None,
    datacenter_pue: float | None,
    intensity_source: str | None,
    *,
    country_iso_code: str | None = None,
    use_codecarbon: bool = True,
) -> CarbonEstimate:
    """CO2 (g) = energy (kWh) x PUE x intensity (gCO2/kWh). PUE None means 1.0 (no overhead).

    With no intensity, CodeCarbon's offline data is used when installed (and ``use_codecarbon``),
    and ``intensity_source`` says so; otherwise ``co2_g`` is None with the reason.
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
    if intensity is None:
        if use_codecarbon and importlib.util.find_spec("codecarbon") is not None:
            try:
                intensity, source = codecarbon_intensity(country_iso_code)
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
        unavailable_reason=reason if co2 is None else None,
    )
