"""Timing whole processes: medians of several runs, side by side."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def time_process(argv: list[str], runs: int, label: str) -> list[float]:
    """Wall-clock seconds of `runs` runs of a command (which must succeed), with progress."""
    seconds = []
    for run in range(1, runs + 1):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - start)
        print(f"  {label}: run {run}/{runs} {seconds[-1]:.3f} s", file=sys.stderr, flush=True)
    return seconds


def median(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)


def timing_table(rows: list[tuple[str, list[float]]]) -> str:
    """A Markdown table of median, min and max seconds per labelled command."""
    runs = len(rows[0][1])
    text = f"| what | median of {runs} (s) | min (s) | max (s) |\n|---|---:|---:|---:|\n"
    for label, seconds in rows:
        text += f"| {label} | {median(seconds):.3f} | {min(seconds):.3f} | {max(seconds):.3f} |\n"
    return text
