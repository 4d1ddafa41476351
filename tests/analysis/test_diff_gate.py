"""`rescompile diff` as a CI gate, in real git repositories the tests build: stages and networks
matched by name, REV:PATH operands with `extends:` resolved at the revision, budgets and exit
statuses, and every output format."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rescompile.cli import app

ROOT = Path(__file__).resolve().parents[2]
BASE = """\
source: a test network
input: {size: 32, channels: 3}
stem:
  - {conv: [3, 16]}
stages:
  - {name: conv2, output: 32, block: [[3, 16], [3, 16]], repeat: 1}
  - {name: conv3, output: 16, block: [[3, 32], [3, 32]], repeat: 1}
  - {name: conv4, output: 8,  block: [[3, 64], [3, 64]], repeat: 1}
head: {pool: avg, classes: 10}
options: {shortcut: A}
"""
SMALL = "extends: _base.yaml\nname: small\nstages:\n  - {name: conv4, repeat: 2}\n"
DEEP = "extends: _base.yaml\nname: deep\nstages:\n  - {name: conv2, repeat: 3}\n"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with specs/_base.yaml and two networks extending it, committed; the tests run
    in it."""
    git(tmp_path, "init", "-q")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "_base.yaml").write_text(BASE)
    (specs / "small.yaml").write_text(SMALL)
    (specs / "deep.yaml").write_text(DEEP)
    commit(tmp_path, "two networks")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def diff_json(*args: str) -> dict:
    result = run("diff", *args, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output)


def table(*specs: str) -> dict[str, dict]:
    """`table --per-stage` of working-tree specs: the independent count the diff must agree with."""
    records = json.loads(run("table", *specs, "--per-stage", "--format", "json").output)
    return {f"{r['spec']}/{r['stage']}": r for r in records}


def conv_bn(kernel: int, cin: int, cout: int) -> int:
    """Parameters of a bias-free conv and its BatchNorm (scale and offset)."""
    return kernel * kernel * cin * cout + 2 * cout


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_stage_inserted_in_the_middle_is_added_and_the_others_unchanged(repo: Path) -> None:
    base = repo / "specs" / "_base.yaml"
    base.write_text(
        BASE.replace(
            "  - {name: conv4",
            "  - {name: conv3b, output: 16, block: [[3, 32], [3, 32]], repeat: 1}\n  - {name: conv4",
        )
    )
    document = diff_json("--base", "HEAD")
    small = next(n for n in document["networks"] if n["name"] == "small")
    stages = {s["name"]: s for s in small["stages"]}
    assert [s["name"] for s in small["stages"]] == ["stem", "conv2", "conv3", "conv3b", "conv4", "head"]
    assert {name: s["status"] for name, s in stages.items()} == {
        "stem": "unchanged",
        "conv2": "unchanged",
        "conv3": "unchanged",
        "conv3b": "added",
        "conv4": "unchanged",
        "head": "unchanged",
    }
    assert stages["conv3b"]["old"] is None
    assert stages["conv3b"]["new"]["params"] == 2 * conv_bn(3, 32, 32)  # two 3x3 convs, identity shortcut
    assert small["new"]["params"] - small["old"]["params"] == 2 * conv_bn(3, 32, 32)
    assert stages["conv3b"]["file"] == "specs/_base.yaml"
    assert stages["conv3b"]["line"] == line_of(base, "conv3b")


def test_a_widened_base_changes_every_extending_network_resolved_at_each_revision(repo: Path) -> None:
    before = table("specs/small.yaml", "specs/deep.yaml")
    base = repo / "specs" / "_base.yaml"
    base.write_text(BASE.replace("[[3, 64], [3, 64]]", "[[3, 96], [3, 96]]"))
    after = table("specs/small.yaml", "specs/deep.yaml")
    document = diff_json("--base", "HEAD")
    assert {n["name"]: n["status"] for n in document["networks"]} == {"small": "changed", "deep": "changed"}
    for network in document["networks"]:
        name = network["name"]
        for stage in network["stages"]:
            for side, counts in (("old", before), ("new", after)):
                expected = counts[f"{name}/{stage['name']}"]
                assert stage[side]["params"] == expected["params"] and stage[side]["macs"] == expected["macs"]
        changed = [s["name"] for s in network["stages"] if s["status"] == "changed"]
        assert changed == ["conv4", "head"]  # wider conv4, and the fc reads 96 channels now
    # the same comparison spelt with two explicit operands, the old one read from git objects
    pair = diff_json("HEAD:specs/small.yaml", "specs/small.yaml")
    assert pair["networks"][0]["old"]["params"] == before["small/conv4"]["params"] + sum(
        before[f"small/{stage}"]["params"] for stage in ("stem", "conv2", "conv3", "head")
    )


def test_networks_added_removed_and_a_renamed_file_paired_by_name(repo: Path) -> None:
    specs = repo / "specs"
    (specs / "small.yaml").rename(specs / "tiny.yaml")  # same `name: small`
    (specs / "deep.yaml").unlink()
    (specs / "wide.yaml").write_text(SMALL.replace("name: small", "name: wide"))
    document = diff_json("--base", "HEAD")
    statuses = {n["name"]: n["status"] for n in document["networks"]}
    assert statuses == {"small": "unchanged", "wide": "added", "deep": "removed"}
    small = next(n for n in document["networks"] if n["name"] == "small")
    assert small["old_file"] == "HEAD:specs/small.yaml" and small["new_file"].endswith("tiny.yaml")
    deep = next(n for n in document["networks"] if n["name"] == "deep")
    assert deep["new"] is None and all(s["status"] == "removed" for s in deep["stages"])
    markdown = run("diff", "--base", "HEAD").output
    summary = markdown.split("\n### ")[0]
    assert "| wide | added |" in summary and "| deep | removed |" in summary
    assert "| small |" not in summary  # unchanged networks are left out of the summary
    assert markdown.startswith("**rescompile diff**: 1 added, 1 removed (3 compared)")


def test_budgets_fail_the_job_with_one_line_per_breach(repo: Path) -> None:
    base = repo / "specs" / "_base.yaml"
    base.write_text(BASE.replace("[[3, 64], [3, 64]]", "[[3, 80], [3, 80]]"))
    passing = run("diff", "--base", "HEAD", "--fail-on", "depth!=0", "--fail-on", "macs>+200%")
    assert passing.exit_code == 0, passing.output
    failing = run("diff", "--base", "HEAD", "--fail-on", "params>+2%", "--fail-on", "depth!=0")
    assert failing.exit_code == 1
    breaches = [line for line in failing.output.splitlines() if line.startswith("- ✗")]
    assert len(breaches) == 2  # params of both networks; depth is unchanged
    old, new = diff_json("HEAD:specs/small.yaml", "specs/small.yaml")["networks"][0]["old"]["params"], None
    new = diff_json("HEAD:specs/small.yaml", "specs/small.yaml")["networks"][0]["new"]["params"]
    small = next(line for line in breaches if line.startswith("- ✗ small:"))
    assert f"params {old:,}" in small and f"{new:,}" in small and "'params>+2%'" in small
    # an absolute limit with a suffix, and one that a cheaper network keeps
    assert run("diff", "--base", "HEAD", "--fail-on", "params>+1M").exit_code == 0
    assert run("diff", "--base", "HEAD", "--fail-on", "params<0").exit_code == 0


def test_github_annotations_point_at_the_changed_stage_in_the_new_spec(repo: Path) -> None:
    small = repo / "specs" / "small.yaml"
    small.write_text(SMALL.replace("repeat: 2", "repeat: 4"))
    result = run("diff", "--base", "HEAD", "--format", "github", "--fail-on", "depth!=0")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("::error ")]
    notices = [line for line in result.output.splitlines() if line.startswith("::notice ")]
    line = line_of(small, "conv4")
    old, new = 2 + 2 * (1 + 1 + 2), 2 + 2 * (1 + 1 + 4)  # stem and fc, two convs per block
    assert errors == [  # '%' is written %25 in a workflow command's message
        f"::error file=specs/small.yaml,line={line},title=budget::small: depth {old} -> {new}"
        f" (+4, +{(new - old) / old:.1%}25) breaks --fail-on 'depth!=0'"
    ]
    assert len(notices) == 1 and notices[0].startswith(f"::notice file=specs/small.yaml,line={line},")
    assert "**rescompile diff**: 1 changed" in result.output  # the Markdown summary follows


def test_a_spec_budget_is_checked_by_check_and_by_diff(repo: Path) -> None:
    small = repo / "specs" / "small.yaml"
    params = table("specs/small.yaml")
    total = sum(r["params"] for key, r in params.items() if key.startswith("small/"))
    small.write_text(SMALL + f"budget:\n  params: {{max: {total - 1}}}\n  depth: {{min: 2}}\n")
    checked = run("check", "specs/small.yaml")
    assert checked.exit_code == 1
    assert re.search(rf"✗ params +computed +{total:,} +budget ≤ +{total - 1:,} +over budget", checked.output)
    assert re.search(r"✓ depth .* budget ≥ +2 +within budget", checked.output)
    report = json.loads(run("check", "specs/small.yaml", "--format", "json").output)
    assert report["specs"][0]["within_budget"] is False and report["errors"] == []
    diffed = run("diff", "--base", "HEAD", "--format", "github")
    assert diffed.exit_code == 1
    budget_line = line_of(small, "params: {max")
    assert f"::error file=specs/small.yaml,line={budget_line},title=budget::small: params" in diffed.output
    assert "is over budget (budget.params.max" in diffed.output
    small.write_text(SMALL + f"budget:\n  params: {{max: {total}}}\n")
    assert run("check", "specs/small.yaml").exit_code == 0
    assert run("diff", "--base", "HEAD").exit_code == 0


def test_csv_has_a_row_per_network_and_stage(repo: Path) -> None:
    (repo / "specs" / "small.yaml").write_text(SMALL.replace("repeat: 2", "repeat: 3"))
    rows = list(csv.DictReader(io.StringIO(run("diff", "--base", "HEAD", "--format", "csv").output)))
    assert [(r["network"], r["stage"]) for r in rows if r["network"] == "small"] == [
        ("small", stage) for stage in ("total", "stem", "conv2", "conv3", "conv4", "head")
    ]
    conv4 = next(r for r in rows if r["network"] == "small" and r["stage"] == "conv4")
    assert conv4["stage_status"] == "changed"
    assert int(conv4["new_params"]) - int(conv4["old_params"]) == 2 * conv_bn(3, 64, 64)


def test_per_block_rows_for_a_changed_stage(repo: Path) -> None:
    (repo / "specs" / "small.yaml").write_text(SMALL.replace("repeat: 2", "repeat: 3"))
    document = diff_json("--base", "HEAD", "--per-block")
    small = next(n for n in document["networks"] if n["name"] == "small")
    conv4 = next(s for s in small["stages"] if s["name"] == "conv4")
    assert [(b["name"], b["status"]) for b in conv4["blocks"]] == [
        ("conv4 block 1", "unchanged"),
        ("conv4 block 2", "unchanged"),
        ("conv4 block 3", "added"),
    ]


def test_library_names_and_folders_resolve_at_the_revision(repo: Path) -> None:
    (repo / "specs" / "small.yaml").write_text(SMALL.replace("repeat: 2", "repeat: 3"))
    by_name = diff_json("HEAD:small", "specs/small.yaml")
    assert by_name["networks"][0]["old_file"] == "HEAD:specs/small.yaml"
    folders = diff_json("HEAD:specs", "specs")
    assert {n["name"]: n["status"] for n in folders["networks"]} == {"small": "changed", "deep": "unchanged"}
    commit(repo, "deeper small")
    revisions = diff_json("HEAD~1:specs", "HEAD:specs")
    assert {n["name"]: n["status"] for n in revisions["networks"]} == {
        "small": "changed",
        "deep": "unchanged",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuchrev:specs/small.yaml", "specs/small.yaml"), "'nosuchrev': unknown git revision"),
        (("HEAD:specs/none.yaml", "specs/small.yaml"), "specs/none.yaml: not found at revision HEAD"),
        (("--base", "HEAD", "nowhere"), "nowhere: not found at revision HEAD nor here"),
        (("--base", "--", "specs"), "unknown git revision"),
        (("specs/small.yaml", "model.onnx"), "model.onnx is an ONNX model, not a spec"),
        (("--fail-on", "mac>2%", "--base", "HEAD"), "unknown metric 'mac' (did you mean 'macs'?)"),
        (("--fail-on", "params>>1", "--base", "HEAD"), "expected METRIC OP CHANGE"),
    ],
)
def test_bad_operands_are_one_line_and_exit_2(repo: Path, args: tuple[str, ...], message: str) -> None:
    (repo / "model.onnx").write_bytes(b"\x08\x07\x12\x07rescompile" + bytes(range(256)) * 8)
    done = subprocess.run(
        [sys.executable, "-m", "rescompile", "diff", *args], cwd=repo, capture_output=True, text=True
    )
    assert done.returncode == 2, done
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    assert done.stdout == ""


def test_outside_a_repository_a_revision_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("diff", "HEAD:specs/resnet50.yaml", "resnet50")
    assert result.exit_code == 2 and "not a git repository" in result.output


def test_the_pre_commit_hooks_run_as_pre_commit_runs_them(repo: Path) -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {hook["id"] for hook in hooks} == {"rescompile-check", "rescompile-diff"}
    (repo / "specs" / "small.yaml").write_text(SMALL.replace("repeat: 2", "repeat: 3"))
    touched = ["specs/_base.yaml", "specs/small.yaml", "README.md"]

    def run_hook(hook: dict, *args: str) -> int:
        command = [sys.executable, "-m", *hook["entry"].split(), *args]
        if hook.get("pass_filenames", True):
            files = [f for f in touched if re.search(hook["files"], f)]
            command += [f for f in files if not re.search(hook.get("exclude", "^$"), f)]
        return subprocess.run(command, cwd=repo, capture_output=True).returncode

    by_id = {hook["id"]: hook for hook in hooks}
    assert run_hook(by_id["rescompile-check"]) == 0  # small.yaml only: the base and README filtered out
    assert run_hook(by_id["rescompile-diff"], "--fail-on", "depth>+100%") == 0
    assert run_hook(by_id["rescompile-diff"], "--fail-on", "depth!=0") == 1


def test_the_readme_workflow_runs_in_a_pull_request_checkout(repo: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Diffs in CI", 1)[1]
    workflow = yaml.safe_load(re.search(r"```yaml\n(name: specs.*?)```", section, re.S).group(1))
    steps = [step["run"] for step in workflow["jobs"]["budgets"]["steps"] if "run" in step]
    commands = [
        step.replace("${{ github.base_ref }}", "main") for step in steps if step.startswith("rescompile")
    ]
    assert len(commands) == 2
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")  # the base branch, as checkout fetches it
    bin_dir = str(Path(sys.executable).parent)

    def job() -> list[int]:
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(repo)}
        return [
            subprocess.run(c, shell=True, cwd=repo, env=env, capture_output=True).returncode for c in commands
        ]

    assert job() == [0, 0]
    (repo / "specs" / "deep.yaml").write_text(DEEP.replace("repeat: 3", "repeat: 4"))  # depth +2
    assert job() == [0, 1]


def test_the_json_schema_describes_budgets() -> None:
    schema = json.loads(run("schema").output)
    budget = schema["$defs"]["Budget"]
    assert "over budget" in budget["description"] and budget["additionalProperties"] is False
    assert set(budget["properties"]) == {"params", "params_total", "macs", "flops", "activations", "depth"}
    assert set(schema["$defs"]["Bound"]["properties"]) == {"max", "min"}


def test_the_project_spec_folder_and_a_subfolder_working_directory(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo / "specs").rename(repo / "models")
    (repo / "pyproject.toml").write_text('[tool.rescompile]\nspecs = "models"\n')
    commit(repo, "specs live in models/")
    (repo / "models" / "small.yaml").write_text(SMALL.replace("repeat: 2", "repeat: 3"))
    document = diff_json("--base", "HEAD")  # no PATH: the project's spec folder
    assert {n["name"]: n["status"] for n in document["networks"]} == {"small": "changed", "deep": "unchanged"}
    assert run("diff", "HEAD:small", "models/small.yaml").exit_code == 0  # a library name, in models/
    monkeypatch.chdir(repo / "models")
    inside = diff_json("--base", "HEAD", ".")
    assert {n["name"]: n["status"] for n in inside["networks"]} == {"small": "changed", "deep": "unchanged"}
    assert inside["networks"][0]["old_file"].startswith("HEAD:models/")


def test_an_old_spec_that_this_change_fixes_is_left_out_with_a_warning(repo: Path) -> None:
    small = repo / "specs" / "small.yaml"
    small.write_text(SMALL.replace("repeat: 2", "repeat: [2]"))
    commit(repo, "a broken spec lands")
    small.write_text(SMALL)  # the fix under review
    done = subprocess.run(
        [sys.executable, "-m", "rescompile", "diff", "--base", "HEAD", "--format", "json"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert {n["name"]: n["status"] for n in document["networks"]} == {"small": "added", "deep": "unchanged"}
    assert document["warnings"] == [line.removeprefix("warning: ") for line in done.stderr.splitlines()]
    assert len(document["warnings"]) == 1 and document["warnings"][0].startswith("HEAD:specs/small.yaml:4:")
    broken_new = run("diff", "--base", "HEAD", "specs/deep.yaml", "specs/small.yaml")
    assert broken_new.exit_code == 0
    small.write_text(SMALL.replace("repeat: 2", "repeat: [2]"))
    assert run("diff", "--base", "HEAD").exit_code == 2  # the new side must be valid


def test_base_paths_resolve_alike_on_both_sides_and_count_once(repo: Path) -> None:
    (repo / "specs" / "small.yaml").write_text(SMALL.replace("repeat: 2", "repeat: 3"))
    for paths in (
        (".",),
        ("small",),
        ("specs/small",),
        ("specs", "specs/small.yaml"),
        ("specs/small.yaml",) * 2,
    ):
        document = diff_json("--base", "HEAD", *paths)
        statuses = [(n["name"], n["status"]) for n in document["networks"]]
        assert ("small", "changed") in statuses and len(statuses) == len(set(statuses)), (paths, statuses)
    (repo / "specs" / "alias.yaml").symlink_to("small.yaml")
    document = diff_json("--base", "HEAD")  # a symlinked spec is the same file, not a duplicate name
    assert sorted(n["name"] for n in document["networks"]) == ["deep", "small"]


def test_a_tab_is_refused_with_or_without_libyaml(tmp_path: Path) -> None:
    spec = tmp_path / "tab.yaml"
    spec.write_text(
        Path(ROOT / "specs/resnet18.yaml").read_text().replace("name: resnet18", "name:\tresnet18")
    )
    result = run("check", str(spec))
    assert result.exit_code == 2 and "YAML syntax error" in result.output
