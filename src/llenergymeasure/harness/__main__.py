"""Entry point: ``python -m llenergymeasure.harness --config REQUEST.json --output DIR``.

Used as the command of every container, and by hand to rerun one experiment. Exit status: 0 with
``DIR/result.json`` written, 1 with ``DIR/error.json`` written, 2 for unusable arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llenergymeasure.harness", description=__doc__)
    parser.add_argument(
        "--config", type=Path, help="HarnessRequest JSON (the experiment and settings)"
    )
    parser.add_argument("--output", type=Path, help="directory for result.json / error.json")
    parser.add_argument(
        "--print-versions", action="store_true", help="print package and schema versions as JSON"
    )
    args = parser.parse_args(argv)

    if args.print_versions:
        from llenergymeasure._version import __version__
        from llenergymeasure.results.models import SCHEMA_VERSION

        print(
            json.dumps({"llenergymeasure_version": __version__, "schema_version": SCHEMA_VERSION})
        )
        return 0
    if args.config is None or args.output is None:
        parser.error("--config and --output are required")
    from llenergymeasure.harness.entry import run_request_file

    return run_request_file(args.config, args.output)


if __name__ == "__main__":
    sys.exit(main())
