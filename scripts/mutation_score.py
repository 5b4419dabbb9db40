#!/usr/bin/env python3
"""Mutation score of the measurement and study core from mutmut's verdicts in mutants/.

Reads ``mutants/<file>.meta`` for every file in ``[tool.mutmut] only_mutate`` (pyproject.toml),
prints killed / survived / no-test counts per file and in total, lists the survivors (see them with
``mutmut show NAME``), and exits 1 when the score is under ``--min`` percent or when mutants meant
to be checked were not. Score = caught / checked, where caught = killed by a test or a timeout, and
checked = every mutant with a verdict (a mutant no test reaches counts as not caught).

    python scripts/mutation_score.py --min 90
    python scripts/mutation_score.py --min 100 'llenergymeasure.harness.stats.*'   # a sample
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CAUGHT = {1, 3, 36, 24, -24, 152, 255, 37, -11, -9}  # killed, pytest error, timeouts, type check
# Files of which only some functions are the measurement core: the study runner's resume decision
# is; the rest of it (spawning runs, collecting results) is tested end to end on the CPU instead.
SCOPE = {
    # config/experiment.py is in the core for the config hash; its validators are config checks
    "src/llenergymeasure/config/experiment.py": [
        "*.x_canonical_*",
        "*ǁExperimentConfigǁhashable_dict__mutmut_*",
        "*ǁExperimentConfigǁbackend_section__mutmut_*",
    ],
    # config/gpus.py: only the hash rule (gpus -> gpu_count); its checks are config validation
    "src/llenergymeasure/config/gpus.py": ["*.x_hashable_gpus__mutmut_*"],
    "src/llenergymeasure/study/runner.py": [
        "*ǁStudyRunnerǁ_already_done__mutmut_*",
        "*ǁStudyRunnerǁ_study_for_resume__mutmut_*",
        "*ǁStudyRunnerǁplan__mutmut_*",
    ],
}
# Timeouts count as caught (a mutant that makes a test loop forever is caught), but a hang that
# is not the mutant's doing (a deadlock in the forked test process) would count too: they are
# listed by name so a reader can check them (`mutmut show NAME`, or run the tests by hand).
TIMEOUT = {24, -24, 36, 152}
SURVIVED = {0}
NO_TESTS = {5, 33}


def verdicts(root: Path, patterns: list[str]) -> dict[str, dict[str, int | None]]:
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    out: dict[str, dict[str, int | None]] = {}
    for source in config["only_mutate"]:
        meta = root / "mutants" / f"{source}.meta"
        if not meta.exists():
            out[source] = {}
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if source in SCOPE:
            codes = {
                k: v for k, v in codes.items() if any(fnmatch.fnmatch(k, p) for p in SCOPE[source])
            }
        if patterns:
            codes = {k: v for k, v in codes.items() if any(fnmatch.fnmatch(k, p) for p in patterns)}
        out[source] = codes
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("patterns", nargs="*", help="mutant name globs (default: every mutant)")
    ap.add_argument("--min", type=float, default=90.0, help="least score in percent (default 90)")
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = ap.parse_args(argv)

    by_file = verdicts(args.root, args.patterns)
    totals = {"caught": 0, "survived": 0, "no_tests": 0, "unchecked": 0}
    survivors: list[str] = []
    timeouts: list[str] = []
    print(f"{'file':58} {'caught':>7} {'survived':>8} {'no test':>7} {'score':>7}")
    for source, codes in by_file.items():
        caught = sum(1 for c in codes.values() if c in CAUGHT)
        survived = [k for k, c in codes.items() if c in SURVIVED]
        no_tests = [k for k, c in codes.items() if c in NO_TESTS]
        unchecked = sum(1 for c in codes.values() if c is None or c == 34)
        checked = caught + len(survived) + len(no_tests)
        score = f"{100 * caught / checked:6.1f}%" if checked else "     -"
        print(f"{source:58} {caught:7d} {len(survived):8d} {len(no_tests):7d} {score}")
        totals["caught"] += caught
        totals["survived"] += len(survived)
        totals["no_tests"] += len(no_tests)
        totals["unchecked"] += unchecked
        survivors += [f"{k}  (survived)" for k in survived] + [f"{k}  (no test)" for k in no_tests]
        timeouts += [k for k, c in codes.items() if c in TIMEOUT]
    checked = totals["caught"] + totals["survived"] + totals["no_tests"]
    if survivors:
        print("\nnot caught (`mutmut show NAME` prints the change):")
        for line in sorted(survivors):
            print("   ", line)
    if timeouts:
        print(
            f"\ncaught by a timeout ({len(timeouts)}; check that the mutant, not the machine, hung):"
        )
        for name in sorted(timeouts):
            print("   ", name)
    if checked == 0:
        print("\nno mutant has a verdict: run `make mutation` (mutmut run) first")
        return 1
    score = 100 * totals["caught"] / checked
    print(
        f"\nmutation score: {score:.1f}% ({totals['caught']} of {checked} mutants caught; "
        f"{totals['survived']} survived, {totals['no_tests']} reached by no test)"
    )
    if totals["unchecked"]:
        print(f"{totals['unchecked']} mutants not checked yet (interrupted run?): failing")
        return 1
    if score < args.min:
        print(f"below the required {args.min:g}%: failing")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
