"""Helpers for tests that train: interrupting a run as a user's Ctrl-C would."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def interrupt_after_first_epoch(args: list[str], run: Path, timeout: float = 300) -> tuple[int, str]:
    """Run `rescompile ARGS` and send it SIGINT once RUN holds a finished epoch (its state.json);
    returns the exit status and stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rescompile", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job inherits SIGINT ignored (and Python then keeps it ignored): give
        # the run the default, so the test behaves the same however pytest was started
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + timeout
    while time.time() < deadline and not (run / "state.json").exists():
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr
