"""A second ``llem``-like process for the device lock tests: holds devices until told to stop.

``python lock_holder.py STUDY_DIR DEVICES SIGNAL_DIR``: takes ``hold_devices(DEVICES)`` (comma
separated) as study STUDY_DIR, then writes ``SIGNAL_DIR/waiting`` (the line naming the holder, if
it had to wait), ``SIGNAL_DIR/held`` (its ``DeviceLockRecord`` as JSON) and holds the locks until
``SIGNAL_DIR/release`` exists. Synchronised through files only, never through sleeps of a length.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from llenergymeasure.runners.device_lock import hold_devices


def main(study_dir: str, devices: str, signal_dir: str) -> None:
    signals = Path(signal_dir)

    def told(line: str) -> None:
        (signals / "waiting.tmp").write_text(line)
        (signals / "waiting.tmp").rename(signals / "waiting")

    with hold_devices(devices.split(","), study_dir=study_dir, run_id="r1", on_wait=told) as rec:
        (signals / "held.tmp").write_text(rec.model_dump_json())
        (signals / "held.tmp").rename(signals / "held")
        while not (signals / "release").exists():
            time.sleep(0.02)


if __name__ == "__main__":
    main(*sys.argv[1:4])
