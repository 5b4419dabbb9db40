"""Small helpers shared by tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def tiny_experiment(**overrides: object) -> dict:
    """A CPU-friendly experiment on synthetic/tiny-llama (seconds, not minutes)."""
    data: dict = {
        "model": "synthetic/tiny-llama",
        "backend": "pytorch",
        "precision": "fp32",
        "batch_size": 2,
        "n": 4,
        "dataset": {"source": "synthetic", "input_tokens": 8},
        "max_output_tokens": 4,
        "warmup": {"mode": "fixed", "runs": 1},
        "baseline": {"enabled": False},
    }
    data.update(overrides)
    return data


def user_config_file(
    directory: Path, model_cache: Path, energy_backend: str = "none", extra: str = ""
) -> Path:
    """A user config for tests: results and models under tmp dirs, a chosen energy meter."""
    return write(
        directory / "user-config.yaml",
        f"output:\n  results_dir: {directory / 'results'}\n  model_cache_dir: {model_cache}\n"
        f"measurement:\n  energy_backend: {energy_backend}\n"
        "execution:\n  config_gap_seconds: 0\n  cycle_gap_seconds: 0\n" + extra,
    )


def within(seconds: float, what: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a daemon thread, waited for at most ``seconds``: its result, or
    its exception re-raised; a hang fails the test naming ``what`` instead of blocking the suite.

    A bounded wait, not a speed target: the bound is generous, and timing targets live in
    benchmarks/."""
    import threading

    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True, name=f"within:{what}")
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise AssertionError(f"{what} did not return within {seconds:g} s (hung?)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def wait_for_manifest(
    results: Path,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 300,
    poll_s: float = 0.1,
) -> tuple[Path, dict[str, Any]]:
    """The first study directory under ``results`` whose manifest satisfies ``predicate``, and
    that manifest; a manifest caught mid-write is read again. A bounded wait: failing after
    ``timeout`` s names what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in results.glob("*/manifest.json"):
            try:
                data = json.loads(m.read_text())
            except ValueError:
                continue
            if predicate(data):
                return m.parent, data
        time.sleep(poll_s)
    raise AssertionError(f"no manifest under {results} reached the expected state in {timeout} s")
