"""Prompt sources: synthetic determinism, the JSONL loader's errors, HF datasets never hanging."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.datasets import load_prompts, read_jsonl_texts, warmup_prompts
from llenergymeasure.datasets.loaders import load_hf_texts, regular_token_ids
from llenergymeasure.errors import ConfigError, LLEMError
from llenergymeasure.models.synthetic import resolve_model
from tests.helpers import within


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    cache = tmp_path_factory.mktemp("datasets-models")
    return AutoTokenizer.from_pretrained(resolve_model("synthetic/tiny-llama", cache).path)


def make_config(**overrides: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "model": "synthetic/tiny-llama",
        "n": 12,
        "max_output_tokens": 7,
        "dataset": {"input_tokens": 20},
    }
    data.update(overrides)
    return ExperimentConfig(**data)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


# -- synthetic -----------------------------------------------------------------------------------


def test_synthetic_prompts_have_exact_lengths_and_no_special_tokens(tokenizer: Any) -> None:
    config = make_config()
    prompts = load_prompts(config, tokenizer)
    assert len(prompts) == 12
    special = set(tokenizer.all_special_ids)
    for p in prompts:
        assert len(p.token_ids) == 20
        assert p.max_new_tokens == 7
        assert not special & set(p.token_ids)
        # the text is the decoded ids, and encodes back to them exactly
        assert p.text is not None
        assert tokenizer(p.text, add_special_tokens=False)["input_ids"] == p.token_ids


def test_synthetic_prompts_are_deterministic_by_seed(tokenizer: Any) -> None:
    a = [p.token_ids for p in load_prompts(make_config(seed=7), tokenizer)]
    b = [p.token_ids for p in load_prompts(make_config(seed=7), tokenizer)]
    c = [p.token_ids for p in load_prompts(make_config(seed=8), tokenizer)]
    assert a == b
    assert a != c
    assert len({tuple(x) for x in a}) == len(a)  # prompts differ from each other
    # prompt i does not depend on n
    more = [p.token_ids for p in load_prompts(make_config(seed=7, n=30), tokenizer)]
    assert more[:12] == a


def test_regular_ids_exclude_special_tokens(tokenizer: Any) -> None:
    ids = regular_token_ids(tokenizer)
    assert ids[0] == 4 and ids[-1] == len(tokenizer) - 1 and len(ids) == len(tokenizer) - 4


def test_warmup_prompts_are_one_batch(tokenizer: Any) -> None:
    config = make_config(batch_size=5)
    prompts = load_prompts(config, tokenizer)
    batch = warmup_prompts(prompts, config)
    assert [p.token_ids for p in batch] == [p.token_ids for p in prompts[:5]]
    small = make_config(batch_size=50)
    assert len(warmup_prompts(prompts, small)) == 12
    with pytest.raises(LLEMError, match="no prompts"):
        warmup_prompts([], config)


# -- JSONL ---------------------------------------------------------------------------------------


def test_jsonl_prompts_tokenised_truncated_and_cycled(
    tmp_path: Path, tokenizer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_lines(
        tmp_path / "p.jsonl",
        [
            json.dumps({"prompt": "a b c"}),
            "",
            json.dumps({"prompt": " ".join(["d"] * 50), "other": 1}),
        ],
    )
    config = make_config(n=5, max_input_tokens=10, dataset={"source": str(path)})
    with caplog.at_level("WARNING"):
        prompts = load_prompts(config, tokenizer)
    assert "cycling" in caplog.text
    assert [len(p.token_ids) for p in prompts] == [4, 10, 4, 10, 4]
    assert prompts[0].token_ids == [1, 4, 5, 6]  # BOS + three words
    assert prompts[1].token_ids == [1] + [7] * 9  # truncated to max_input_tokens
    assert prompts[2].text == "a b c"
    assert all(p.max_new_tokens == 7 for p in prompts)


def test_jsonl_custom_field(tmp_path: Path, tokenizer: Any) -> None:
    path = write_lines(tmp_path / "q.jsonl", [json.dumps({"question": "e f"})])
    config = make_config(n=1, dataset={"source": str(path), "field": "question"})
    assert load_prompts(config, tokenizer)[0].token_ids == [1, 8, 9]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"prompt": "ok"}', '{"prompt": "x"'], r"line 2: invalid JSON"),
        (
            ['{"prompt": "ok"}', "", '{"text": "x", "id": 3}'],
            r"line 3: no key 'prompt' \(keys: 'text', 'id'\)",
        ),
        (['{"prompt": 5}'], r"line 1: 'prompt' must be a string, got a number"),
        (['{"prompt": null}'], r"line 1: 'prompt' must be a string, got a null"),
        (['["a list"]'], r"line 1: expected a JSON object with key 'prompt', got a array"),
        (['{"prompt": "   "}'], r"line 1: 'prompt' is empty"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, lines: list[str], expected: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ConfigError, match=expected) as info:
        read_jsonl_texts(path)
    assert str(path) in str(info.value)


def test_jsonl_reports_several_problems_at_once(tmp_path: Path) -> None:
    lines = ['{"prompt": "ok"}'] + ["not json"] * 15
    path = write_lines(tmp_path / "many.jsonl", lines)
    with pytest.raises(ConfigError) as info:
        read_jsonl_texts(path)
    err = info.value
    assert "15 bad line(s)" in str(err)
    assert err.problems[0].startswith("line 2:") and err.problems[9].startswith("line 11:")
    assert err.problems[-1] == "... and 5 more problems"


def test_jsonl_empty_missing_and_binary_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no prompts \\(the file is empty\\)"):
        read_jsonl_texts(empty)
    blank = write_lines(tmp_path / "blank.jsonl", ["", "   "])
    with pytest.raises(ConfigError, match="no prompts"):
        read_jsonl_texts(blank)
    with pytest.raises(ConfigError, match="does not exist"):
        read_jsonl_texts(tmp_path / "missing.jsonl")
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b'{"prompt": "a"}\n\xff\xfe\n')
    with pytest.raises(ConfigError, match=r"bin.jsonl:2: not UTF-8"):
        read_jsonl_texts(binary)


# -- Hugging Face datasets -----------------------------------------------------------------------


def test_hf_without_the_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # what an uninstalled package looks like
    with pytest.raises(LLEMError, match="needs the `datasets` package"):
        load_hf_texts("AIEnergyScore/text_generation", field="text", split="train", subset=None)


def test_hf_offline_and_uncached_fails_fast(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hf = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf.config, "HF_DATASETS_CACHE", tmp_path)
    with pytest.raises(LLEMError, match=r"offline mode is set.*not in the local datasets cache"):
        within(
            60,
            "load_hf_texts offline with an empty cache (it must fail, not wait for a hub)",
            load_hf_texts,
            "AIEnergyScore/text_generation",
            field="text",
            split="train",
            subset=None,
        )


def test_hf_unreachable_hub_uses_the_cache_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A closed loopback port stands in for an unreachable hub; no traffic leaves the machine."""
    hf = pytest.importorskip("datasets")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hf.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf.config, "HF_DATASETS_CACHE", tmp_path)
    monkeypatch.setattr(hf.config, "HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(LLEMError, match=f"hub is not reachable: 127.0.0.1:{port} unreachable"):
        load_hf_texts("AIEnergyScore/text_generation", field="text", split="train", subset=None)
    assert hf.config.HF_HUB_OFFLINE is False  # the offline switch is restored


SILENT_HUB_CHILD = """
import sys, time
from llenergymeasure.datasets.loaders import load_hf_texts
from llenergymeasure.errors import LLEMError
start = time.perf_counter()
try:
    load_hf_texts("org/silent", field="text", split="train", subset=None, timeout_s=2.0)
except LLEMError as exc:
    print("ERROR", exc)
print("ELAPSED", time.perf_counter() - start)
"""


def test_hf_silent_hub_hits_the_bounded_timeout(tmp_path: Path) -> None:
    """A loopback server that accepts connections and never answers: the loader must give up.

    Run in a child whose environment points every hub URL at the loopback server before
    huggingface_hub is imported (it reads ``HF_ENDPOINT`` at import), so nothing leaves the machine.
    """
    pytest.importorskip("datasets")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    offline_vars = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    env = {k: v for k, v in os.environ.items() if k not in offline_vars}
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{server.getsockname()[1]}",
        HF_HOME=str(tmp_path / "hf"),
        HF_DATASETS_CACHE=str(tmp_path / "hf-datasets"),
    )
    try:
        child = subprocess.run(
            [sys.executable, "-c", SILENT_HUB_CHILD],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        server.close()
    assert "ERROR loading the Hugging Face dataset 'org/silent' took longer than 2 s" in (
        child.stdout
    ), child.stdout + child.stderr
    # the message above can only come from the bounded wait giving up, which is the point; its
    # duration is not bounded from above here (a loaded machine stretches it), only from below:
    # the loader waited its whole timeout before saying so (the subprocess timeout guards a hang)
    elapsed = float(child.stdout.split("ELAPSED")[1])
    assert elapsed >= 2.0
    assert held, "the child never contacted the loopback hub"
