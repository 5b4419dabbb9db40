"""The local runner's child interpreter: ``python -m llenergymeasure.runners.local_child``.

The local runner starts each experiment as this module in a fresh interpreter (not a
``multiprocessing`` spawn), so the child never re-imports the caller's ``__main__``: a script that
calls ``run_experiment`` without an ``if __name__ == "__main__":`` guard, a script read from stdin
and a notebook cell all work, and a child can never run the user's script (or create its result
folders) a second time.

Arguments: the request file, the run directory, ``--controller-pid`` (the child ends at once if
its parent is no longer that process) and ``--target module:function`` (another entry function
with the signature ``f(request_path, output_dir)``; tests use it to make a child crash on purpose).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any


def resolve_target(spec: str) -> Callable[..., Any]:
    """``module:qualified.name`` to the function it names."""
    module_name, _, qualname = spec.partition(":")
    if not module_name or not qualname:
        raise ValueError(f"--target {spec!r}: expected module:function")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llenergymeasure.runners.local_child")
    parser.add_argument("request_path")
    parser.add_argument("output_dir")
    parser.add_argument("--controller-pid", type=int, default=None)
    parser.add_argument("--target", default=None)
    args = parser.parse_args(argv)
    if args.target is None:
        from llenergymeasure.harness.entry import spawn_child_main

        spawn_child_main(args.request_path, args.output_dir, controller_pid=args.controller_pid)
        return 0  # spawn_child_main ends the process itself
    resolve_target(args.target)(args.request_path, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
