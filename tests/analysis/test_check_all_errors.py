"""`rescompile check` reports every independent error of every file it is given, one line each,
and nothing that only follows from another error; `table` stops at the first."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from rescompile.cli import app

HEADER = "name: tiny\nsource: test\ninput: {size: 32, channels: 3}\nstem:\n  - {conv: [3, 16]}\n"


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def write(tmp_path: Path, body: str) -> str:
    """A spec of HEADER (5 lines) and `body`, as the user would name it."""
    spec = tmp_path / "bad.yaml"
    spec.write_text(HEADER + body)
    return os.path.relpath(spec)


def check_errors(tmp_path: Path, body: str) -> tuple[str, list[str]]:
    """(the spec's name, the lines `check` prints for it), having exited with status 2."""
    spec = write(tmp_path, body)
    result = run("check", spec)
    assert result.exit_code == 2
    return spec, result.stderr.splitlines()


def test_lowering_errors_of_every_stage_and_the_head(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        "stages:\n"
        "  - {name: conv2, output: 30, block: [[3, 16], [3, 16]], repeat: 2}\n"  # 32 -> 30: no stride
        "  - {name: conv3, output: 16, block: [[3, 32, 32], [3, 32]], repeat: 2}\n"  # 16 channels in
        "  - {name: conv4, output: 12, block: [[3, 64], [3, 64]], repeat: 1}\n"  # 16 -> 12: no stride
        "head: {pool: none, classes: 10}\n",
    )
    result = run("check", spec)
    assert result.exit_code == 2
    # conv3's size is not checked against conv2's wrong one (that would only cascade); its rows are
    no_stride = "does not follow from input {}: no stride up to 4 gives it"
    assert result.stderr.splitlines() == [
        f"error: {spec}:7: stages[0].output: output 30 {no_stride.format(32)}",
        f"error: {spec}:8: stages[1].block[0]: groups 32 do not divide the 16 input channels",
        f"error: {spec}:9: stages[2].output: output 12 {no_stride.format(16)}",
        f"error: {spec}:10: head.pool: a classifier needs global pooling (avg or max)",
    ]
    table = run("table", spec)
    assert table.exit_code == 2
    assert table.stderr.splitlines() == result.stderr.splitlines()[:1]


def test_semantic_errors_all_reported(tmp_path: Path) -> None:
    spec, errors = check_errors(
        tmp_path,
        "stages:\n"
        "  - {name: conv2, output: 32, block: [[3, 16]], repeat: 1}\n"
        "  - {name: conv2, output: 16, block: [[3, 32]], repeat: 1}\n"
        "preprocess: {mean: [0.5, 0.5]}\n"
        "outputs: [C5]\n",
    )
    assert errors == [
        f"error: {spec}:8: stages[1].name: duplicate stage name 'conv2'",
        f"error: {spec}:9: preprocess.mean: expected 3 values, got 2",
        f"error: {spec}:10: outputs[0]: C5 is not a stage output; this network has C2..C3",
    ]


def test_a_union_reports_its_closest_member_only(tmp_path: Path) -> None:
    spec, errors = check_errors(
        tmp_path,
        "stages:\n"
        "  - {name: conv2, output: 32, block: [[3, 16.5, 2], [3.5, 16]], repeat: 1}\n"
        "preprocess: {scale: x}\n",
    )
    # not "[3, 16.5, 2] has more than 2 items", nor "[3.5, 16] lacks its groups", nor "x is no integer"
    assert errors == [
        f"error: {spec}:7: stages[0].block[0][1]: expected an integer, got 16.5",
        f"error: {spec}:7: stages[0].block[1][0]: expected an integer, got 3.5",
        f"error: {spec}:8: preprocess.scale: expected a number, got 'x'",
    ]


def test_every_argument_is_checked_after_a_missing_one() -> None:
    files = [
        "tests/bad_specs/kernel_even.yaml",
        "tests/bad_specs/no_such_spec.yaml",
        "tests/bad_specs/output_wrong_twice.yaml",
        "specs/cifar/resnet20.yaml",
    ]
    result = run("check", *files)
    assert result.exit_code == 2
    errors = result.stderr.splitlines()
    assert errors[0].startswith("error: tests/bad_specs/kernel_even.yaml:8: stages[1].block[1]: kernel")
    assert errors[1].startswith("error: 'tests/bad_specs/no_such_spec.yaml': no such file")
    assert [line.split(": ")[1] for line in errors[2:4]] == [
        "tests/bad_specs/output_wrong_twice.yaml:7",
        "tests/bad_specs/output_wrong_twice.yaml:9",
    ]
    assert errors[4:] == ["3 of 4 spec arguments are invalid or missing"]
    assert result.stdout.startswith("ok    specs/cifar/resnet20.yaml"), "the good file is still checked"
