"""`rescompile build` vs building and saving keras.applications directly, as whole processes.

Side by side in one run, medians of several runs: ResNet-152 (goal: ratio <= 1.2, ideally < 1.0),
and CIFAR ResNet-1202 on its own. Run: python benchmarks/bench_build.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import record
from timing import median, time_process, timing_table

KERAS_SCRIPT = "import keras; m = keras.applications.ResNet152(weights=None); m.save({path!r})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rescompile = shutil.which("rescompile") or "rescompile"
    with tempfile.TemporaryDirectory() as out:
        ours, theirs = [], []
        for _ in range(args.runs):  # interleaved, so drift in machine load hits both alike
            ours += time_process(
                [rescompile, "build", "specs/keras/resnet152.yaml", "--out", out], 1, "rescompile"
            )
            script = KERAS_SCRIPT.format(path=f"{out}/apps.keras")
            theirs += time_process([sys.executable, "-c", script], 1, "keras.applications")
        deep = time_process(
            [rescompile, "build", "specs/cifar/resnet1202.yaml", "--out", out], args.runs, "1202"
        )
    ratio = median(ours) / median(theirs)
    rows = [
        ("`rescompile build specs/keras/resnet152.yaml`", ours),
        ("keras.applications.ResNet152(weights=None) + save", theirs),
        ("`rescompile build specs/cifar/resnet1202.yaml`", deep),
    ]
    verdict = (
        f"bar 1.2: {'met' if ratio <= 1.2 else 'NOT met'}; goal < 1.0: {'met' if ratio < 1.0 else 'not met'}"
    )
    body = (
        timing_table(rows)
        + f"\nRatio rescompile / keras.applications (ResNet-152): **{ratio:.2f}** ({verdict}).\n"
    )
    print(body)
    record("rescompile build vs keras.applications", "python benchmarks/bench_build.py", body)


if __name__ == "__main__":
    main()
