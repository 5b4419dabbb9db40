#!/usr/bin/env python3
"""Plant, one at a time, the faults that once survived the suite (issue 20) and check that the
named tests now fail. Works on a temporary copy of src/ and tests/: the tree is never modified.

    .venv/bin/python scripts/named_mutations.py
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = [
    (
        "Zeus's negative window (a counter going backwards) taken as a number",
        "src/llenergymeasure/energy/zeus_meter.py",
        "if energy is not None and energy < 0:",
        "if False:",
        ["tests/energy/test_energy_fake_clock.py"],
    ),
    (
        "an NVML counter going backwards in the window taken as energy",
        "src/llenergymeasure/energy/nvml_meter.py",
        "            if b < a:\n",
        "            if False:\n",
        ["tests/energy/test_energy_fake_clock.py"],
    ),
    (
        "adjusted energy per output token divided by requests",
        "src/llenergymeasure/harness/result.py",
        "energy_per_output_token_above_idle_j=per(above, out_tokens)",
        "energy_per_output_token_above_idle_j=per(above, n_requests)",
        ["tests/core/test_core_worked_examples.py"],
    ),
    (
        "percentile interpolation reversed",
        "src/llenergymeasure/harness/stats.py",
        "return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))",
        "return float(sorted_values[hi] - (sorted_values[hi] - sorted_values[lo]) * (pos - lo))",
        ["tests/core/test_core_worked_examples.py"],
    ),
    (
        "_already_done true for any completed entry",
        "src/llenergymeasure/study/runner.py",
        """        path = store.study_dir / entry.run_dir / RESULT_FILE
        return path.is_file() and result_problem(entry, path) is None""",
        "        return True",
        ["tests/core/test_core_resume.py"],
    ),
    (
        "canonical JSON separators changed",
        "src/llenergymeasure/config/experiment.py",
        'separators=(",", ":")',
        'separators=(", ", ": ")',
        ["tests/test_config_experiment.py"],
    ),
    (
        "CV with population variance",
        "src/llenergymeasure/harness/stats.py",
        "var = sum((v - mean) ** 2 for v in values) / (n - 1)",
        "var = sum((v - mean) ** 2 for v in values) / n",
        ["tests/core/test_core_worked_examples.py"],
    ),
]


def main() -> int:
    survived = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for part in ("src", "tests", "examples"):
            shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
        env = {**os.environ, "PYTHONPATH": str(root / "src")}
        for name, f, old, new, tests in CASES:
            p = root / f
            orig = p.read_text()
            if orig.count(old) != 1:
                print(f"{name}: the line to mutate is not in {f} any more; update this script")
                survived += 1
                continue
            p.write_text(orig.replace(old, new))
            try:
                r = subprocess.run(
                    [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *tests],
                    cwd=root,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
            finally:
                p.write_text(orig)
            failed = [
                line.split(" - ")[0].removeprefix("FAILED ")
                for line in r.stdout.splitlines()
                if line.startswith("FAILED")
            ]
            print(f"{name}: {'killed' if failed else 'SURVIVED'} by {len(failed)} test(s)")
            for t in failed:
                print("    ", t)
            survived += not failed
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
