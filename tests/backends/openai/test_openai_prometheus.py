"""The ``/metrics`` parser on a page captured from a real vLLM server and on SGLang's names."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llenergymeasure.backends.openai.prometheus import (
    MetricsFormatError,
    Sample,
    engine_sample,
    parse_text,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _page(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_vllm_capture_while_busy() -> None:
    s = engine_sample(_page("vllm-0.32.0-cpu-busy.metrics.txt"))
    assert s is not None and s.dialect == "vllm"
    assert s.running == 8.0
    assert s.waiting == 0.0
    assert s.kv_cache_usage == pytest.approx(0.0014649331624244644)
    assert s.preemptions == 0.0
    assert s.prompt_tokens == 77.0
    assert s.generation_tokens == 2211.0


def test_vllm_capture_after_the_requests() -> None:
    s = engine_sample(_page("vllm-0.32.0-cpu-idle.metrics.txt"))
    assert s is not None
    assert (s.running, s.waiting, s.kv_cache_usage) == (0.0, 0.0, 0.0)
    assert s.generation_tokens == 3205.0


def test_sglang_names_counts_summed_usage_averaged() -> None:
    s = engine_sample(_page("sglang-written.metrics.txt"))
    assert s is not None and s.dialect == "sglang"
    assert s.running == 46.0  # 24 + 22 over two data-parallel ranks
    assert s.waiting == 3.0
    assert s.kv_cache_usage == pytest.approx(0.32)  # mean of 0.28 and 0.36
    assert s.preemptions == 3.0
    assert s.prompt_tokens == 8.128902e06
    assert s.generation_tokens == 7.557572e06


def test_older_vllm_names() -> None:
    page = "vllm:num_requests_running 3\nvllm:gpu_cache_usage_perc 0.5\n"
    s = engine_sample(page)
    assert s is not None
    assert (s.running, s.kv_cache_usage, s.waiting) == (3.0, 0.5, None)


def test_a_page_of_another_server_gives_none() -> None:
    assert engine_sample("# HELP x y\nprocess_cpu_seconds_total 1.5\n") is None


def test_parse_text_labels_escapes_specials_and_timestamps() -> None:
    page = (
        '# TYPE a counter\na_total{path="/v1",msg="say \\"hi\\"\\n"} 2 1700000000\n'
        'b{le="+Inf"} +Inf\nc NaN\nd -Inf\n'
    )
    a, b, c, d = parse_text(page)
    assert a == Sample("a_total", (("path", "/v1"), ("msg", 'say "hi"\n')), 2.0)
    assert b.value == math.inf and math.isnan(c.value) and d.value == -math.inf


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("vllm:x{a=1} 2\n", "bad labels"),
        ("vllm:x 2 3 4\n", "not a Prometheus sample"),
        ("vllm:x two\n", "'two' is not a number"),
    ],
)
def test_bad_lines_name_the_line(page: str, message: str) -> None:
    with pytest.raises(MetricsFormatError, match=rf"line 1: .*{message}|line 1: {message}"):
        parse_text(page)
