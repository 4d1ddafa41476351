"""`rescompile table` over the whole spec library, as a whole process (goal: median < 1.5 s).

Run: python benchmarks/bench_table.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import record
from timing import median, time_process, timing_table

GOAL_SECONDS = 1.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rescompile = shutil.which("rescompile") or "rescompile"
    n_specs = len([p for p in Path("specs").rglob("*.yaml") if not p.name.startswith("_")])
    table = time_process([rescompile, "table", "specs"], args.runs, "rescompile table specs")
    bare = time_process([sys.executable, "-c", "pass"], args.runs, "python -c pass")
    rows = [(f"`rescompile table specs` ({n_specs} specs)", table), ("`python -c pass` (for scale)", bare)]
    body = timing_table(rows)
    body += f"\nGoal: under {GOAL_SECONDS} s: {'met' if median(table) < GOAL_SECONDS else 'NOT met'}."
    print(body)
    record("rescompile table over the spec library", "python benchmarks/bench_table.py", body)


if __name__ == "__main__":
    main()
