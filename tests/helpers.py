"""Small helpers shared by tests."""

from __future__ import annotations

from pathlib import Path


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
