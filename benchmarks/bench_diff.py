"""`rescompile diff` over the whole spec library between two git revisions, as a CI job runs it,
side by side with `rescompile table` of the same library (goal: diff median < 2 s).

A scratch repository holds the library at revision A; revision B widens one stage of one network,
revision C edits every spec (so no network's costs can be reused from the other side).

Run: python benchmarks/bench_diff.py [--runs N]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import record
from timing import median, time_process, timing_table

GOAL_SECONDS = 2.0
ROOT = Path(__file__).resolve().parent.parent


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=repo, check=True)


def scratch_repository(folder: Path) -> int:
    """Revisions A, B, C of the library in `folder` (see the module's docstring); the spec count."""
    shutil.copytree(ROOT / "specs", folder / "specs")
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "A")
    git(folder, "tag", "A")
    resnet50 = folder / "specs" / "resnet50.yaml"
    resnet50.write_text(resnet50.read_text().replace("[1, 1024]], repeat: 6", "[1, 1024]], repeat: 7"))
    git(folder, "commit", "-qam", "B")
    git(folder, "tag", "B")
    specs = [p for p in (folder / "specs").rglob("*.yaml") if not p.name.startswith("_")]
    for path in specs:
        path.write_text(
            re.sub(r"^source: ([\"']?)", r"source: \1Edited ", path.read_text(), count=1, flags=re.M)
        )
    git(folder, "commit", "-qam", "C")
    git(folder, "tag", "C")
    return len(specs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rescompile = shutil.which("rescompile") or "rescompile"
    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch)
        count = scratch_repository(repo)

        def timed(label: str, *argv: str) -> tuple[str, list[float]]:
            command = ["bash", "-c", 'cd "$0" && "$@"; test $? -le 1', str(repo), rescompile, *argv]
            return label, time_process(command, args.runs, label)

        rows = [
            timed(f"`rescompile table specs` ({count} specs)", "table", "specs"),
            timed("`rescompile diff A:specs B:specs` (one network changed)", "diff", "A:specs", "B:specs"),
            timed("`rescompile diff --base A` (working tree = C: every spec edited)", "diff", "--base", "A"),
            timed(
                "`rescompile diff A:specs C:specs --format github --fail-on 'macs>+2%'`",
                "diff",
                "A:specs",
                "C:specs",
                "--format",
                "github",
                "--fail-on",
                "macs>+2%",
            ),
        ]
    table = median(rows[0][1])
    body = (
        timing_table(rows)
        + "\n"
        + "".join(
            f"- {label}: {median(seconds) / table:.2f}x the time of `table`\n" for label, seconds in rows[1:]
        )
    )
    slowest = max(median(seconds) for _, seconds in rows[1:])
    body += (
        f"\nGoal: whole-library diff under {GOAL_SECONDS} s: {'met' if slowest < GOAL_SECONDS else 'NOT met'}"
    )
    body += f" (slowest median {slowest:.3f} s).\n"
    print(body)
    record("rescompile diff between two revisions", "python benchmarks/bench_diff.py", body)


if __name__ == "__main__":
    main()
