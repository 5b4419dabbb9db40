"""CO2 location: the user config's country (and region) reach CodeCarbon's offline lookup and are
recorded with the estimate; a location CodeCarbon's data lacks is said, never averaged away."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from llenergymeasure import run_study
from llenergymeasure.config.user import load_user_config
from llenergymeasure.energy.carbon import codecarbon_regions, estimate_co2
from llenergymeasure.errors import ConfigError
from tests.helpers import tiny_experiment, user_config_file, write

needs_codecarbon = pytest.mark.skipif(
    importlib.util.find_spec("codecarbon") is None, reason="codecarbon not installed"
)


def test_user_config_location_fields(tmp_path: Path) -> None:
    cfg = load_user_config(
        write(
            tmp_path / "c.yaml",
            "measurement: {carbon_country_iso_code: usa, carbon_region: California}\n",
        )
    )
    assert cfg.measurement.carbon_country_iso_code == "USA"
    assert cfg.measurement.carbon_region == "California"
    with pytest.raises(ConfigError, match="carbon_country_iso_code") as bad:
        load_user_config(write(tmp_path / "b.yaml", "measurement: {carbon_country_iso_code: FR}\n"))
    assert "'FR'" in str(bad.value)
    with pytest.raises(ConfigError, match="needs carbon_country_iso_code"):
        load_user_config(write(tmp_path / "r.yaml", "measurement: {carbon_region: ontario}\n"))


@needs_codecarbon
def test_region_figure_differs_from_country_and_is_recorded() -> None:
    country = estimate_co2(3.6e6, None, 1.0, None, country_iso_code="USA")
    region = estimate_co2(3.6e6, None, 1.0, None, country_iso_code="usa", region="California")
    assert country.co2_g is not None and region.co2_g is not None
    assert country.country_iso_code == "USA" and country.region is None
    assert region.country_iso_code == "USA" and region.region == "california"
    assert region.intensity_source is not None
    assert region.intensity_source.startswith("codecarbon:USA/california")
    # California's grid is cleaner than the US average in CodeCarbon's data
    assert region.carbon_intensity_gco2_kwh < country.carbon_intensity_gco2_kwh  # type: ignore[operator]
    zone = estimate_co2(3.6e6, None, 1.0, None, country_iso_code="SWE", region="se3")
    assert zone.region == "SE3" and zone.intensity_source.startswith("codecarbon:SWE/SE3")  # type: ignore[union-attr]


@needs_codecarbon
def test_unknown_region_or_country_is_a_reason_not_an_average() -> None:
    est = estimate_co2(3.6e6, None, 1.0, None, country_iso_code="USA", region="atlantis")
    assert est.co2_g is None and est.carbon_intensity_gco2_kwh is None
    assert "'atlantis'" in (est.unavailable_reason or "")
    assert "california" in (est.unavailable_reason or "")  # the known regions are listed
    no_regions = estimate_co2(3.6e6, None, 1.0, None, country_iso_code="FRA", region="idf")
    assert no_regions.co2_g is None and "no regional data for FRA" in (
        no_regions.unavailable_reason or ""
    )
    bad = estimate_co2(3.6e6, None, 1.0, None, country_iso_code="XXX")
    assert bad.co2_g is None and "'XXX'" in (bad.unavailable_reason or "")


@needs_codecarbon
def test_explicit_intensity_wins_and_location_is_not_recorded() -> None:
    est = estimate_co2(3.6e6, 100.0, 1.0, "user_config", country_iso_code="FRA")
    assert est.co2_g == pytest.approx(100.0) and est.intensity_source == "user_config"
    assert est.country_iso_code is None


@needs_codecarbon
def test_regions_listed_from_codecarbon_data() -> None:
    from codecarbon.input import DataSource

    data = DataSource()
    assert "ontario" in codecarbon_regions(data, "CAN")
    assert codecarbon_regions(data, "DEU") == []


@needs_codecarbon
def test_location_reaches_the_result_of_a_run(tmp_path: Path, shared_model_cache: Path) -> None:
    uc = user_config_file(tmp_path, shared_model_cache)
    uc.write_text(
        uc.read_text().replace("measurement:\n", "measurement:\n  carbon_country_iso_code: fra\n")
    )
    study = write(
        tmp_path / "s.yaml",
        yaml.safe_dump(
            {
                "name": "co2",
                "base": tiny_experiment(),
                "sweep": {"batch_size": [2]},
                "execution": {"n_cycles": 1, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
            }
        ),
    )
    res = run_study(study, user_config_path=uc)
    [run] = res.runs
    assert run.co2.country_iso_code == "FRA"
    assert (run.co2.intensity_source or "").startswith("codecarbon:FRA")
    assert run.co2.carbon_intensity_gco2_kwh is not None
