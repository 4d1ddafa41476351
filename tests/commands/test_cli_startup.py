"""The CLI imports TensorFlow/Keras only when a command needs them: help and argument errors are
instant, and the first import, wherever it happens, is silenced (no C++ start-up lines)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
from rescompile.cli import main
sys.argv = ["rescompile", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
print("loaded:", sorted({"keras", "tensorflow", "jax"} & set(sys.modules)), "exit:", code)
"""


def _probe(*args: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)
    return done.stdout.splitlines()[-1] + " | " + done.stdout + done.stderr


def test_help_and_argument_errors_import_no_tensorflow(tmp_path: Path) -> None:
    assert _probe("train", "--help").startswith("loaded: [] exit: 0")
    out = str(tmp_path / "out")
    refused = _probe("build", "specs/cifar/resnet20.yaml", "--in-channels", "0", "--out", out)
    assert refused.startswith("loaded: [] exit: 2") and "--in-channels must be between 1" in refused
    assert _probe("table", "specs/cifar/resnet20.yaml").startswith("loaded: [] exit: ")
    from rescompile import __version__

    version = _probe("--version")
    assert version.startswith("loaded: [] exit: ") and f"rescompile {__version__} (Python 3." in version


def test_the_first_keras_import_is_quiet_wherever_it_happens(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rescompile", "build", "specs/cifar/resnet20.yaml", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == "", done.stderr[-2000:]  # no absl/cudart lines, no TF_CPP_MIN_LOG_LEVEL needed


def test_every_help_ends_with_examples_of_its_command() -> None:
    from typer.main import get_command

    from rescompile.cli import app

    group = get_command(app)
    commands = [("", group), *group.commands.items()]
    commands += [(f"experiment {name}", c) for name, c in group.commands["experiment"].commands.items()]
    assert len(commands) == 18  # the root, 16 commands and the experiment group
    for name, command in commands:
        epilog = command.epilog or ""
        lines = [line.strip() for line in epilog.splitlines() if line.strip()]
        assert lines[0] == "Examples:" and len(lines) >= 2, name
        assert all(line.startswith(f"$ rescompile {name}") for line in lines[1:]), (name, lines)
    done = subprocess.run(
        [sys.executable, "-m", "rescompile", "bench", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "$ rescompile bench resnet50.onnx --batch-size 1,32" in done.stdout
    assert "<auto|cuda|cpu>" in done.stdout, "choice options list their choices"
