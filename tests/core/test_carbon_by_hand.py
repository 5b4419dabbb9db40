"""CO2 by hand: energy (kWh) x PUE x intensity (gCO2/kWh), every input check on its boundary, every
reason and location field, and CodeCarbon's bundled figures traced back to its data files."""

from __future__ import annotations

import importlib.util
import math

import pytest

from llenergymeasure.energy.carbon import (
    codecarbon_intensity,
    codecarbon_regions,
    estimate_co2,
    region_name,
)

needs_codecarbon = pytest.mark.skipif(
    importlib.util.find_spec("codecarbon") is None, reason="codecarbon not installed"
)

NO_INTENSITY = (
    "no carbon intensity: set measurement.carbon_intensity_gco2_kwh in the user config "
    "or LLEM_CARBON_INTENSITY, or install llenergymeasure[codecarbon] for its offline data"
)
LOOKUP_FAILED = "CodeCarbon's offline carbon-intensity lookup failed: "


# -- the arithmetic ----------------------------------------------------------------------------


def test_co2_is_kwh_times_pue_times_intensity() -> None:
    # 7.2 MJ = 2 kWh (3.6 MJ per kWh); 2 kWh x 1.25 x 300 g/kWh = 750 g
    est = estimate_co2(7.2e6, 300.0, 1.25, "user_config")
    assert est.energy_kwh == pytest.approx(2.0, rel=1e-12)
    assert est.co2_g == pytest.approx(750.0, rel=1e-12)
    assert est.datacenter_pue == 1.25
    assert est.carbon_intensity_gco2_kwh == 300.0
    assert est.intensity_source == "user_config"
    assert est.unavailable_reason is None
    assert est.country_iso_code is None and est.region is None
    # 900 kJ = 0.25 kWh; no PUE given means 1.0: 0.25 x 1.0 x 400 = 100 g
    plain = estimate_co2(9.0e5, 400.0, None, "env:LLEM_CARBON_INTENSITY")
    assert plain.datacenter_pue == 1.0
    assert plain.energy_kwh == pytest.approx(0.25, rel=1e-12)
    assert plain.co2_g == pytest.approx(100.0, rel=1e-12)


def test_pue_and_intensity_boundaries() -> None:
    # PUE exactly 1.0 (no overhead) and intensity exactly 0 (a carbon-free grid) are allowed
    zero = estimate_co2(3.6e6, 0.0, 1.0, "user_config")
    assert zero.co2_g == 0.0 and zero.unavailable_reason is None
    assert zero.carbon_intensity_gco2_kwh == 0.0 and zero.intensity_source == "user_config"
    for pue in (0.999, math.nan, math.inf, -1.0):
        with pytest.raises(ValueError) as bad:
            estimate_co2(3.6e6, 100.0, pue, "user_config")
        assert str(bad.value) == (f"datacenter_pue must be >= 1.0 (1.0 = no overhead), got {pue!r}")
    for intensity in (-0.001, math.nan, math.inf):
        with pytest.raises(ValueError) as bad:
            estimate_co2(3.6e6, intensity, 1.0, "user_config")
        assert str(bad.value) == (
            "carbon_intensity_gco2_kwh must be a non-negative number of gCO2 per kWh, got "
            f"{intensity!r}"
        )


def test_missing_energy_or_intensity_is_a_reason() -> None:
    for energy in (None, math.nan):
        est = estimate_co2(energy, 400.0, 1.5, "user_config")
        assert est.co2_g is None and est.energy_kwh is None
        assert est.unavailable_reason == "no energy measurement to convert"
        # the intensity the user gave is still recorded beside the missing energy
        assert est.carbon_intensity_gco2_kwh == 400.0 and est.intensity_source == "user_config"
    no_ci = estimate_co2(3.6e6, None, 1.0, "ignored", use_codecarbon=False, country_iso_code="FRA")
    assert no_ci.co2_g is None and no_ci.energy_kwh == 1.0
    assert no_ci.unavailable_reason == NO_INTENSITY
    # no intensity: no source, and no lookup happened, so no location is recorded
    assert no_ci.intensity_source is None and no_ci.carbon_intensity_gco2_kwh is None
    assert no_ci.country_iso_code is None and no_ci.region is None
    # both missing: the energy is the reason given (nothing to convert at all)
    neither = estimate_co2(None, None, 1.0, None, use_codecarbon=False)
    assert neither.unavailable_reason == "no energy measurement to convert"


def test_region_name_spelling() -> None:
    assert region_name("usa", " California ") == "california"
    assert region_name(" swe ", " se3 ") == "SE3"
    assert region_name("NOR", "no1") == "NO1"
    assert region_name("fin", "fi") == "FI"
    assert region_name("CAN", "Ontario") == "ontario"


# -- CodeCarbon's bundled data (offline) --------------------------------------------------------


@needs_codecarbon
def test_codecarbon_figures_trace_back_to_its_data_files() -> None:
    world, label = codecarbon_intensity()
    # data/private_infra/carbon_intensity_per_source.json: "world_average": 475 gCO2/kWh
    assert world == 475.0
    assert label == "codecarbon:world_average (bundled data, offline; no country given)"
    fra, label = codecarbon_intensity(" fra ")
    # global_energy_mix.json, FRA: "carbon_intensity": 56.039 gCO2/kWh (1 kWh -> kg -> x 1000 g)
    assert fra == pytest.approx(56.039, rel=1e-9)
    assert label == "codecarbon:FRA (bundled energy-mix data, offline)"
    cal, label = codecarbon_intensity("usa", "California")
    # usa_emissions.json, california: 394.769 lbs/MWh x 0.45359237 kg/lb / 1000 kWh/MWh x 1000 g/kg
    assert cal == pytest.approx(394.769 * 0.45359237, rel=1e-6)
    assert label == "codecarbon:USA/california (bundled regional data, offline)"
    se3, label = codecarbon_intensity("SWE", "se3")
    # nordic_country_energy_mix.json, SE3: "emission_factor": 27.0 gCO2eq/kWh
    assert se3 == pytest.approx(27.0, rel=1e-9)
    assert label == "codecarbon:SWE/SE3 (bundled regional data, offline)"


@needs_codecarbon
def test_codecarbon_lookup_errors_name_the_input_and_what_works() -> None:
    with pytest.raises(ValueError) as no_country:
        codecarbon_intensity(None, "ontario")
    assert str(no_country.value) == "a region ('ontario') needs its country's 3-letter ISO code"
    with pytest.raises(KeyError) as bad_country:
        codecarbon_intensity("xxx")
    assert bad_country.value.args[0] == (
        "CodeCarbon has no energy-mix data for country 'XXX'; give a 3-letter ISO code "
        "such as FRA, USA, DEU"
    )
    with pytest.raises(ValueError) as no_regions:
        codecarbon_intensity("DEU", "bavaria")
    assert str(no_regions.value) == (
        "CodeCarbon has no regional data for DEU; leave the region out (regions exist for "
        "USA, CAN, CHN, SWE, NOR, FIN)"
    )
    with pytest.raises(ValueError) as many:
        codecarbon_intensity("USA", "atlantis")
    # the first eight known regions, then an ellipsis (the US data has more than eight)
    assert str(many.value) == (
        "CodeCarbon has no data for region 'atlantis' of USA; known regions: alabama, alaska, "
        "arizona, arkansas, california, colorado, connecticut, delaware, ..."
    )
    with pytest.raises(ValueError) as few:
        codecarbon_intensity("SWE", "se9")
    assert str(few.value) == (
        "CodeCarbon has no data for region 'se9' of SWE; known regions: SE1, SE2, SE3, SE4"
    )


@needs_codecarbon
def test_codecarbon_regions_per_country() -> None:
    from codecarbon.input import DataSource

    data = DataSource()
    usa = codecarbon_regions(data, "USA")
    assert "california" in usa and usa == sorted(usa)
    assert not any(r.startswith("_") for r in usa)  # the file's "_unit"/"_source" entries
    assert len(usa) == 52  # 50 states, the District of Columbia and the US total row
    assert codecarbon_regions(data, "CAN")[:3] == ["alberta", "british columbia", "manitoba"]
    assert codecarbon_regions(data, "SWE") == ["SE1", "SE2", "SE3", "SE4"]
    assert codecarbon_regions(data, "NOR") == ["NO1", "NO2", "NO3", "NO4", "NO5"]
    assert codecarbon_regions(data, "FIN") == ["FI"]
    china = codecarbon_regions(data, "CHN")
    assert "beijing" in china and "tianjin" in china and china == sorted(china)
    assert codecarbon_regions(data, "FRA") == []


@needs_codecarbon
def test_estimate_records_the_looked_up_location() -> None:
    est = estimate_co2(7.2e6, None, 1.5, "ignored", country_iso_code=" swe ", region="se3")
    # 2 kWh x 1.5 x 27 g/kWh (SE3) = 81 g
    assert est.co2_g == pytest.approx(81.0, rel=1e-9)
    assert est.carbon_intensity_gco2_kwh == pytest.approx(27.0, rel=1e-9)
    assert est.intensity_source == "codecarbon:SWE/SE3 (bundled regional data, offline)"
    assert est.country_iso_code == "SWE" and est.region == "SE3"
    assert est.unavailable_reason is None
    country_only = estimate_co2(3.6e6, None, 1.0, None, country_iso_code="fra")
    assert country_only.country_iso_code == "FRA" and country_only.region is None
    world = estimate_co2(3.6e6, None, 1.0, None)
    assert world.co2_g == 475.0 and world.country_iso_code is None and world.region is None


@needs_codecarbon
def test_a_failed_lookup_is_the_reason_and_keeps_the_location_asked_for() -> None:
    est = estimate_co2(3.6e6, None, 1.0, "ignored", country_iso_code="usa", region="Atlantis")
    assert est.co2_g is None and est.carbon_intensity_gco2_kwh is None
    assert est.intensity_source is None
    assert est.unavailable_reason is not None
    assert est.unavailable_reason.startswith(
        LOOKUP_FAILED + "CodeCarbon has no data for region 'Atlantis' of USA"
    )
    assert est.country_iso_code == "USA" and est.region == "atlantis"
    no_country = estimate_co2(3.6e6, None, 1.0, None, region="ontario")
    assert no_country.unavailable_reason == (
        LOOKUP_FAILED + "a region ('ontario') needs its country's 3-letter ISO code"
    )
    assert no_country.country_iso_code is None and no_country.region is None
    # a failed lookup without energy: the missing energy is the reason given
    nothing = estimate_co2(None, None, 1.0, None, country_iso_code="XXX")
    assert nothing.unavailable_reason == "no energy measurement to convert"
