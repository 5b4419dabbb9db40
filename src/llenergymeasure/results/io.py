"""Atomic writes and loading of result files.

Every file is written to a temporary name in the same directory, flushed, fsynced and renamed
over the target, so a crash leaves either the old file or the new one, never half of one. A failed
write (a full or read-only disk) removes its temporary file and raises ``OSError`` naming the target.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as exc:  # name the file the caller wanted, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(p)) from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            # a full disk fails in write/fsync, whose errors name no file: name the target
            raise OSError(exc.errno, exc.strerror, str(p)) from exc
        raise
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str))


def damage_of(exc: BaseException, text: str | None = None) -> str:
    """What is wrong with a file that failed to parse, in one line: empty, cut short or not
    JSON/YAML (with the place), or the fields of the wrong type (pydantic's own words)."""
    from pydantic import ValidationError

    if text is not None and not text.strip():
        return "the file is empty"
    if isinstance(exc, ValidationError):
        fields = []
        for err in exc.errors()[:3]:
            where = ".".join(str(p) for p in err.get("loc", ())) or "(the whole file)"
            if err.get("type") == "json_invalid":
                return _not_json(str(err.get("ctx", {}).get("error", err.get("msg", ""))), text)
            fields.append(f"{where}: {err.get('msg')}")
        more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
        return "a field has the wrong type or is missing: " + "; ".join(fields) + more
    if isinstance(exc, json.JSONDecodeError):
        return _not_json(f"{exc.msg} at line {exc.lineno} column {exc.colno}", text)
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {first}"


def _not_json(detail: str, text: str | None) -> str:
    cut = text is not None and text.lstrip().startswith(("{", "[")) and "EOF" in detail
    cut = cut or (
        text is not None and text.lstrip().startswith("{") and not text.rstrip().endswith("}")
    )
    what = "it is cut short (truncated)" if cut else "it is not valid JSON"
    return f"{what}: {detail}"
