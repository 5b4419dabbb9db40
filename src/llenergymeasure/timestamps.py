"""``utc_now()``: the one wall-clock timestamp written into manifests, results and run folders.

At the bottom of the import graph (standard library only), so the harness, the runners, the
study and the data models can all use it.
"""

from __future__ import annotations

import datetime as _dt


def utc_now(timespec: str = "auto") -> str:
    """Now in UTC, ISO 8601 with the offset (``2026-01-31T12:00:00.123456+00:00``).

    ``timespec`` as for ``datetime.isoformat``: ``"auto"`` (microseconds, omitted when zero),
    ``"milliseconds"``, ``"seconds"``...
    """
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec=timespec)
