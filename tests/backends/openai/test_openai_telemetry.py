"""Engine telemetry: scrapes on an injected clock, the summary, the CSV, the saturation gate."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from llenergymeasure.backends.openai.http import BaseURL, get
from llenergymeasure.backends.openai.telemetry import (
    TelemetryScraper,
    saturation_gate,
    saturation_target,
    summarise,
    write_series,
)
from llenergymeasure.config.validity import ValiditySettings
from tests.fakes.clock import ManualClock
from tests.fakes.openai_server import FakeOpenAIServer

FIXTURES = Path(__file__).parent / "fixtures"


def _page(running: float, kv: float, preempt: float, gen: float) -> str:
    return (
        f'vllm:num_requests_running{{engine="0"}} {running}\n'
        f'vllm:num_requests_waiting{{engine="0"}} 1\n'
        f'vllm:kv_cache_usage_perc{{engine="0"}} {kv}\n'
        f'vllm:num_preemptions_total{{engine="0"}} {preempt}\n'
        f'vllm:prompt_tokens_total{{engine="0"}} 10\n'
        f'vllm:generation_tokens_total{{engine="0"}} {gen}\n'
    )


def _scraped(pages: list[str], clock: ManualClock) -> TelemetryScraper:
    it = iter(pages)
    scraper = TelemetryScraper(lambda: next(it), period_s=1.0, clock=clock)
    for _ in pages:
        scraper.scrape_once()
        clock.advance(1.0)
    return scraper


def test_summary_means_maxima_and_counter_increases(tmp_path: Path) -> None:
    clock = ManualClock(start=50.0)
    pages = [_page(4, 0.1, 2, 100), _page(8, 0.3, 2, 180), _page(6, 0.2, 5, 300)]
    series = _scraped(pages, clock).series
    s = summarise(series, target=8.0, timeseries_file="engine_telemetry.csv")
    assert s is not None
    assert s.dialect == "vllm" and s.n_scrapes == 3 and s.n_scrape_errors == 0
    assert s.running_requests_mean == 6.0 and s.running_requests_max == 8.0
    assert s.waiting_requests_mean == 1.0
    assert s.kv_cache_usage_mean == pytest.approx(0.2) and s.kv_cache_usage_max == 0.3
    assert s.preemptions == 3.0 and s.generation_tokens == 200.0 and s.prompt_tokens == 0.0
    assert s.saturation_ratio == 0.75
    path = tmp_path / "engine_telemetry.csv"
    write_series(series, path, origin_s=50.0)
    rows = list(csv.DictReader(path.open()))
    assert [r["time_s"] for r in rows] == ["0.0000", "1.0000", "2.0000"]
    assert [r["running"] for r in rows] == ["4.0", "8.0", "6.0"]


def test_a_counter_that_falls_counts_from_zero_after_the_fall() -> None:
    clock = ManualClock()
    pages = [_page(1, 0, 0, 100), _page(1, 0, 0, 150), _page(1, 0, 0, 20)]
    s = summarise(_scraped(pages, clock).series, target=None)
    assert s is not None and s.generation_tokens == 70.0 and s.saturation_ratio is None


def test_failed_scrapes_are_counted_not_raised() -> None:
    clock = ManualClock()
    answers = iter([_page(2, 0, 0, 1), "garbage line here", "process_cpu_seconds_total 3\n"])

    def fetch() -> str:
        page = next(answers, None)
        if page is None:
            raise OSError("connection refused")
        return page

    scraper = TelemetryScraper(fetch, clock=clock)
    for _ in range(4):
        scraper.scrape_once()
    s = summarise(scraper.series, target=2.0)
    assert s is not None
    assert (s.n_scrapes, s.n_scrape_errors) == (1, 3)
    assert s.last_scrape_error == "OSError: connection refused"
    assert s.saturation_ratio == 1.0


def test_no_metrics_page_at_all_gives_no_summary() -> None:
    scraper = TelemetryScraper(lambda: "", clock=ManualClock())
    assert summarise(scraper.series, target=4.0) is None


@pytest.mark.parametrize(
    ("mode", "concurrency", "max_num_seqs", "target"),
    [
        ("closed", 16, None, 16.0),
        ("closed", 64, 8, 8.0),
        ("offline", 4, 256, 4.0),
        ("open", 16, 8, None),
        ("closed", None, 8, None),
    ],
)
def test_saturation_target(
    mode: str, concurrency: int | None, max_num_seqs: int | None, target: float | None
) -> None:
    assert saturation_target(mode, concurrency, max_num_seqs) == target


def test_saturation_gate_threshold_from_validity() -> None:
    clock = ManualClock()
    series = _scraped([_page(6, 0, 0, 0), _page(6, 0, 0, 0)], clock).series  # mean 6
    th = ValiditySettings()
    assert th.min_running_batch_share == 0.8
    under = saturation_gate(summarise(series, target=8.0), th.min_running_batch_share)
    assert under is not None and not under.passed
    assert under.value == 0.75 and under.threshold == 0.8


def test_saturation_gate_passes_at_the_threshold_and_fails_below() -> None:
    clock = ManualClock()
    series = _scraped([_page(4, 0, 0, 0), _page(4, 0, 0, 0)], clock).series  # mean 4
    at = saturation_gate(summarise(series, target=5.0), 0.8)
    assert at is not None and at.passed and at.value == pytest.approx(0.8)
    below = saturation_gate(summarise(series, target=5.01), 0.8)
    assert below is not None and not below.passed
    assert "mean running batch 4.00 of 5.01 asked" in (below.detail or "")
    assert saturation_gate(summarise(series, target=None), 0.8) is None


def test_scraper_thread_reads_the_fake_servers_metrics() -> None:
    page = (FIXTURES / "vllm-0.32.0-cpu-busy.metrics.txt").read_text()
    with FakeOpenAIServer(metrics_pages=[page]) as server:
        base = BaseURL.parse(server.base_url)
        scraper = TelemetryScraper(lambda: get(base, "/metrics", 5.0)[1], period_s=0.01)
        scraper.start()
        series = scraper.stop()  # at least the final scrape, whatever the thread managed
    assert series.points and all(s.running == 8.0 for _, s in series.points)
    assert server.metrics_hits == len(series.points) + series.n_errors
