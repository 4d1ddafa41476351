"""`check`, `table`, `diff`, `schema` and `generate` as a user runs them."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from rescompile.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_check_fails_with_exit_1_and_a_table_when_a_number_is_off(tmp_path: Path) -> None:
    spec = tmp_path / "off.yaml"
    text = Path("specs/resnet18.yaml").read_text().replace("11689512", "11689513")
    spec.write_text(text)
    result = run("check", str(spec))
    assert result.exit_code == 1
    assert "✗ params" in result.output and "11,689,512" in result.output and "11,689,513" in result.output


def test_table_formats_agree() -> None:
    specs = ["specs/resnet50.yaml", "specs/cifar/resnet20.yaml"]
    records = json.loads(run("table", *specs, "--format", "json").output)
    rows = list(csv.DictReader(io.StringIO(run("table", *specs, "--format", "csv").output)))
    assert [r["params"] for r in records] == [25_557_032, 269_722]
    assert [int(r["params"]) for r in rows] == [25_557_032, 269_722]
    markdown = run("table", *specs).output
    assert "| resnet50 | 50 | 25,557,032 |" in markdown
    assert "3.858 G" in markdown and "7.716 G" in markdown  # MACs and FLOPs = 2 x MACs


def test_per_stage_rows_sum_to_the_total() -> None:
    records = json.loads(run("table", "specs/resnet101.yaml", "--per-stage", "--format", "json").output)
    assert [r["stage"] for r in records] == ["stem", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "head"]
    assert sum(r["params"] for r in records) == 44_549_160
    assert sum(r["macs"] for r in records) == 7_570_194_432


def test_diff_shows_where_v1_5_moves_the_stride() -> None:
    out = run("diff", "specs/resnet50.yaml", "specs/resnet50_v1.5.yaml").output
    lines = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "+0 (+0.0%)" in lines["conv2_x"]
    assert "+77,070,336" in lines["conv3_x"]
    assert "+231,211,008" in lines["**total**"]


def test_schema_is_json_schema_of_the_spec() -> None:
    schema = json.loads(run("schema").output)
    assert schema["title"] == "rescompile spec" and schema["$schema"].endswith("2020-12/schema")
    assert {"name", "input", "stem", "stages", "expect"} <= set(schema["properties"])


def test_generate_check_detects_stale_output(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    assert run("generate", "--out", str(out)).exit_code == 0
    assert run("generate", "--check", "--out", str(out)).exit_code == 0
    tables = out / "tables.md"
    tables.write_text(tables.read_text().replace("25,557,032", "25,557,033"))
    stale = run("generate", "--check", "--out", str(out))
    assert stale.exit_code == 1
    assert "-| resnet50 | 50 | 25,557,033" in stale.output and "+| resnet50 | 50 | 25,557,032" in stale.output
    assert "25,557,033" in tables.read_text()  # --check writes nothing


def test_committed_generated_folder_is_up_to_date() -> None:
    result = run("generate", "--check")
    assert result.exit_code == 0, result.output


def test_paper_table1_regenerated(tmp_path: Path) -> None:
    shutil.rmtree(tmp_path, ignore_errors=True)
    text = Path("generated/tables.md").read_text()
    assert "| conv3_x | 28x28 | [3x3, 128; 3x3, 128] x 2 | [3x3, 128; 3x3, 128] x 4 |" in text
    assert "| FLOPs (MACs) | | 1.814 G | 3.664 G | 3.858 G | 7.570 G | 11.282 G |" in text
