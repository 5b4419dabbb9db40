"""Machine-wide device locks (issue 29 item 6): two studies never measure the same device at once.

Real processes, synchronised through files (a holder says it holds; the test tells it to let go),
never through sleeps of a chosen length.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from llenergymeasure.errors import RunnerError
from llenergymeasure.results.models import DeviceLockRecord
from llenergymeasure.runners.device_lock import hold_devices, lock_mode, measured_devices
from tests.helpers import tiny_experiment, user_config_file, wait_for_manifest, write

HOLDER = Path(__file__).parent / "fakes" / "lock_holder.py"
ROOT = Path(__file__).resolve().parents[1]


def _wait_for(path: Path, proc: subprocess.Popen[bytes], what: str, bound_s: float = 120) -> None:
    """Until ``path`` exists; a hang guard (generous), not a speed target."""
    deadline = time.monotonic() + bound_s
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"{what}: the process exited ({proc.returncode}) first: {out}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never happened")
        time.sleep(0.02)


def _holder(study: str, devices: str, signals: Path) -> subprocess.Popen[bytes]:
    signals.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(HOLDER), study, devices, str(signals)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _gpu(index: int, uuid: str) -> SimpleNamespace:
    return SimpleNamespace(nvml_index=index, uuid=uuid)


def test_measured_devices_are_gpu_uuids_or_the_cpu() -> None:
    none = SimpleNamespace(gpus=[], gpu_count=0)
    assert measured_devices(None, {}, none) == ["cpu"]
    assert measured_devices([0], {}, none) == ["cpu"]
    two = SimpleNamespace(gpus=[_gpu(0, "GPU-aaa"), _gpu(1, "GPU-bbb")], gpu_count=2)
    assert measured_devices(None, {}, two) == ["GPU-aaa", "GPU-bbb"]
    assert measured_devices([1], {}, two) == ["GPU-bbb"]
    # CUDA index 0 of a process that sees only NVML GPU 1 is GPU 1: the same file as above
    assert measured_devices([0], {"CUDA_VISIBLE_DEVICES": "1"}, two) == ["GPU-bbb"]
    assert measured_devices(None, {"CUDA_VISIBLE_DEVICES": "GPU-bbb"}, two) == ["GPU-bbb"]
    assert measured_devices(None, {"CUDA_VISIBLE_DEVICES": ""}, two) == ["cpu"]


def test_a_second_process_waits_and_names_the_holder(tmp_path: Path) -> None:
    a = _holder("/studies/first_study", "GPU-aaa,cpu", tmp_path / "a")
    try:
        _wait_for(tmp_path / "a" / "held", a, "the first study holding its devices")
        b = _holder("/studies/second_study", "cpu", tmp_path / "b")
        try:
            _wait_for(tmp_path / "b" / "waiting", b, "the second study waiting")
            line = (tmp_path / "b" / "waiting").read_text()
            assert "cpu is held by study /studies/first_study" in line
            assert f"pid {a.pid}" in line and "run r1" in line
            # it waits: it cannot hold while the first still does
            assert not (tmp_path / "b" / "held").exists() and b.poll() is None
            (tmp_path / "a" / "release").touch()
            _wait_for(tmp_path / "b" / "held", b, "the second study holding once released")
            record = DeviceLockRecord.model_validate_json((tmp_path / "b" / "held").read_text())
            assert record.devices == ["cpu"] and record.waited_s > 0
            assert record.waited_for == [line.removeprefix("waiting: ")]
            (tmp_path / "b" / "release").touch()
            assert b.wait(60) == 0
        finally:
            b.kill()
        assert a.wait(60) == 0
    finally:
        a.kill()
    # released: the file names no holder any more, and a third taker does not wait
    with hold_devices(["cpu"], study_dir="third", run_id="r") as rec:
        assert rec.waited_s == 0 and rec.waited_for == []


def test_refuse_mode_fails_naming_the_other_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _holder("/studies/first_study", "GPU-aaa", tmp_path / "a")
    try:
        _wait_for(tmp_path / "a" / "held", a, "the first study holding its GPU")
        monkeypatch.setenv("LLEM_DEVICE_LOCK", "refuse")
        with (
            pytest.raises(RunnerError) as err,
            hold_devices(["GPU-aaa"], study_dir="second", run_id="r"),
        ):
            raise AssertionError("must not get the lock")
        assert "GPU-aaa is held by study /studies/first_study" in str(err.value)
        assert "LLEM_DEVICE_LOCK=wait" in str(err.value)
    finally:
        a.kill()


def test_a_killed_holder_frees_its_devices(tmp_path: Path) -> None:
    a = _holder("/studies/crashed", "cpu", tmp_path / "a")
    _wait_for(tmp_path / "a" / "held", a, "the holder holding")
    os.kill(a.pid, signal.SIGKILL)
    a.wait(60)
    with hold_devices(["cpu"], study_dir="next", run_id="r", environ={**os.environ}) as rec:
        assert rec.waited_for == []  # the kernel released the dead holder's lock


def test_unknown_mode_is_refused_with_what_works() -> None:
    with pytest.raises(RunnerError, match=r"LLEM_DEVICE_LOCK='later'.*wait.*refuse"):
        lock_mode({"LLEM_DEVICE_LOCK": "later"})


def test_a_study_waits_for_another_studys_run_and_records_it(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    """A real study (tiny-llama, energy none, local runner) started while another study holds
    the CPU: its run is marked running, waits, runs once released, and its result.json says
    whom it waited for."""
    uc = user_config_file(tmp_path, shared_model_cache)
    study = write(
        tmp_path / "study.yaml",
        yaml.safe_dump({"name": "second", "base": tiny_experiment(), "sweep": {"n": [4]}}),
    )
    a = _holder("/studies/first_study", "cpu", tmp_path / "a")
    try:
        _wait_for(tmp_path / "a" / "held", a, "the first study holding the CPU")
        code = (
            "from llenergymeasure import run_study; import sys; "
            "r = run_study(sys.argv[1], user_config_path=sys.argv[2]); "
            "sys.exit(1 if r.failures else 0)"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(study), str(uc)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # release the first study only once the second says it is waiting (its manifest says
        # running before it asks for the lock: releasing then would let it through unwaited)
        lines: list[str] = []
        waiting = threading.Event()

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if "waiting: cpu is held by study" in line:
                    waiting.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_for_manifest(
                tmp_path / "results",
                lambda m: m["runs"][0]["status"] == "running",
                timeout=120,
            )
            assert waiting.wait(120) or proc.poll() is not None, "".join(lines)
            (tmp_path / "a" / "release").touch()
            proc.wait(timeout=300)
            reader.join(60)
        finally:
            proc.kill()
        err = "".join(lines)
        assert proc.returncode == 0, err
        assert "waiting: cpu is held by study /studies/first_study" in err
        result = next((tmp_path / "results").glob("second_*/*/result.json"))
        lock = json.loads(result.read_text())["runner"]["device_lock"]
        assert lock["devices"] == ["cpu"] and lock["waited_s"] > 0
        assert "held by study /studies/first_study" in lock["waited_for"][0]
    finally:
        a.kill()


def test_side_by_side_runs_lock_their_pool_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """execution.concurrent_runs: each run locks its own GPUs (the pool's labels); the run whose
    GPU another study holds waits for it, its neighbour does not."""
    import functools
    import threading

    import llenergymeasure.study.concurrent as concurrent_mod
    import llenergymeasure.study.runner as runner_mod
    from llenergymeasure.config.study import StudyConfig
    from llenergymeasure.config.user import UserConfig
    from llenergymeasure.runners.device_lock import DeviceLocker
    from llenergymeasure.study.runner import StudyOptions, StudyRunner
    from tests.fakes.concurrent_doubles import Log

    log = Log()
    seen: dict[tuple[int, ...], DeviceLockRecord | None] = {}

    class Recording:
        def __init__(self, gpus: list[int]) -> None:
            self.inner = log.make_executor(None, gpus)
            self.gpus = gpus

        def run(self, request, run_dir, timeout_s=None):  # type: ignore[no-untyped-def]
            seen[tuple(self.gpus)] = request.runner.device_lock
            return self.inner.run(request, run_dir, timeout_s)

    monkeypatch.setattr(
        concurrent_mod, "executor_for", lambda resolved, cache, gpus=None: Recording(gpus or [])
    )
    waiting = threading.Event()
    told: list[str] = []

    def on_wait(line: str) -> None:
        told.append(line)
        waiting.set()

    monkeypatch.setattr(
        runner_mod, "DeviceLocker", functools.partial(DeviceLocker, on_wait=on_wait)
    )
    study = StudyConfig(
        name="side",
        base={"model": "synthetic/tiny-llama"},
        sweep={"batch_size": [1, 2]},
        execution={
            "n_cycles": 1,
            "config_gap_seconds": 0,
            "cycle_gap_seconds": 0,
            "concurrent_runs": 2,
        },
    )
    sr = StudyRunner(
        study,
        StudyOptions(results_dir=tmp_path / "results", gpu_pool={0: "GPU-a", 1: "GPU-b"}),
        user_config=UserConfig(),
    )
    a = _holder("/studies/first_study", "GPU-b", tmp_path / "a")
    try:
        _wait_for(tmp_path / "a" / "held", a, "the other study holding GPU-b")
        box: dict = {}
        thread = threading.Thread(target=lambda: box.update(result=sr.run()), daemon=True)
        thread.start()
        assert waiting.wait(120), "the run on GPU-b never waited"
        assert (1,) not in seen  # it has not started while the other study holds its GPU
        (tmp_path / "a" / "release").touch()
        thread.join(120)
        assert not thread.is_alive() and not box["result"].failures
    finally:
        a.kill()
    assert "GPU-b is held by study /studies/first_study" in told[0]
    on_a, on_b = seen[(0,)], seen[(1,)]
    assert on_a is not None and on_a.devices == ["GPU-a"] and on_a.waited_for == []
    assert on_b is not None and on_b.devices == ["GPU-b"] and on_b.waited_s > 0
    assert on_b.waited_for == [told[0].removeprefix("waiting: ")]
