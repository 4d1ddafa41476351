"""Bad option values and damaged run directories: one line, exit 2, nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rescompile.errors import RescompileError
from rescompile.train.recipe import load_recipe
from rescompile.train.trainer import run_lock


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rescompile", *args], capture_output=True, text=True)


def one_line_error(done: subprocess.CompletedProcess, fragment: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], done.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("build", "specs/cifar/resnet20.yaml", "--in-channels", "0"), "--in-channels must be between 1"),
        (("build", "specs/cifar/resnet20.yaml", "--in-channels", "-1"), "--in-channels must be between 1"),
        (("build", "specs/cifar/resnet20.yaml", "--freeze", "99"), "--freeze must be backbone or 0..3"),
        (("build", "specs/cifar/resnet20.yaml", "--freeze", "stem"), "--freeze must be backbone or 0..3"),
        (
            ("train", "specs/resnet50.yaml", "--out", "/tmp/rescompile-no-run", "--freeze", "5"),
            "backbone or 0..4",
        ),
        (("build", "specs/cifar/resnet20.yaml", "--outputs", "C9"), "C2..C4"),
        (("train", "specs/cifar/resnet20.yaml", "--out", "x", "--seed", "-1"), "--seed must be between"),
        (("train", "specs/cifar/resnet20.yaml", "--out", "x", "--cpu-devices", "0"), "--cpu-devices must be"),
        (("train", "specs/cifar/resnet20.yaml", "--out", "x", "--epochs", "inf"), "epochs"),
        (("train", "specs/cifar/resnet20.yaml", "--out", "x", "--set", "batch_size=true"), "batch_size"),
        (("bench", "missing.onnx", "--batch-size", "-1"), "--batch-size values must be between 1"),
    ],
)
def test_option_values_are_checked(args: tuple[str, ...], fragment: str, tmp_path: Path) -> None:
    done = cli(*(str(tmp_path / a) if a in ("x",) else a for a in args))
    one_line_error(done, fragment)
    assert not (tmp_path / "x").exists()


def test_recipe_values_are_strict_and_consistent() -> None:
    for override, fragment in [
        ("batch_size=true", "batch_size"),
        ("epochs=.nan", "finite"),
        ("schedule.boundaries=[1, 2, 3]", "equal lengths, got 3 and 2"),
    ]:
        with pytest.raises(RescompileError, match=fragment):
            load_recipe("paper", [override])
    assert load_recipe("paper", ["optimizer.lr=1"]).optimizer.lr == 1.0


def test_binary_class_names_file(tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_bytes(b"\xff\xfe\x00\x01binary")
    done = cli(
        "export", "specs/cifar/resnet20.yaml", "-o", str(tmp_path / "m.onnx"), "--class-names", str(names)
    )
    one_line_error(done, "not UTF-8 text")
    assert not (tmp_path / "m.onnx").exists()


def test_a_network_larger_than_memory_is_refused_with_the_estimate(tmp_path: Path) -> None:
    spec = tmp_path / "huge.yaml"
    base = Path("specs/resnet50.yaml").resolve()
    stage = "{name: conv5_x, output: 7, block: [[1, 65536], [3, 65536], [1, 65536]]}"
    spec.write_text(f"extends: {base}\nname: huge\nstages:\n  - {stage}\n")
    done = cli("build", str(spec), "--out", str(tmp_path / "out"))
    one_line_error(done, "bytes of weights x 3")
    assert "pass --no-memory-check" in done.stderr
    assert not (tmp_path / "out").exists()


def test_two_trainings_into_one_run_directory_are_refused(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from rescompile.train.trainer import run_lock\n"
        f"with run_lock(Path({str(tmp_path)!r})):\n    print('locked', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        pattern = rf"another `rescompile train` \(pid {holder.pid}\)"
        with pytest.raises(RescompileError, match=pattern), run_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path):  # a killed holder leaves no stale lock
        pass


def _run_dir(tmp_path: Path, **files: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    for name, text in files.items():
        (run / name.replace("_", ".", 1)).write_text(text)
    return run


RECIPE = load_recipe("fast").model_dump_json()
STATE = json.dumps({"seed": 0, "epoch": 1, "step": 7})


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"state_json": STATE[:9], "recipe_json": RECIPE}, "state.json is damaged"),
        ({"state_json": STATE}, "has no recipe.json"),
        ({"state_json": STATE, "recipe_json": RECIPE[:20]}, "recipe.json is damaged"),
        ({"state_json": STATE, "recipe_json": RECIPE}, "has no checkpoint.keras"),
        (
            {"state_json": STATE, "recipe_json": RECIPE, "checkpoint_keras": "PK\x03\x04trunc"},
            "checkpoint.keras",
        ),
    ],
)
def test_damaged_run_directories_refuse_to_resume(tmp_path: Path, files: dict, fragment: str) -> None:
    run = _run_dir(tmp_path, **files)
    (run / ".checkpoint.keras.abcd1234.keras").write_text("litter of a killed write")
    before = {p.name: p.read_bytes() for p in run.iterdir() if not p.name.startswith(".")}
    done = cli("train", "specs/cifar/resnet20.yaml", "--out", str(run), "--resume", "--data", str(tmp_path))
    one_line_error(done, fragment)
    assert {p.name: p.read_bytes() for p in run.iterdir() if not p.name.startswith(".")} == before
    assert not (run / ".checkpoint.keras.abcd1234.keras").exists(), "temporaries of killed writes are removed"


def test_build_removes_temporaries_of_killed_writes(tmp_path: Path) -> None:
    litter = [tmp_path / ".cifar_resnet20.keras.x1y2z3w4.keras", tmp_path / ".cifar_resnet20.py.a1b2c3d4.tmp"]
    for path in litter:
        path.write_text("half a file")
    keep = tmp_path / ".cifar_resnet20.keras.notes"
    keep.write_text("not ours")
    assert cli("build", "specs/cifar/resnet20.yaml", "--out", str(tmp_path)).returncode == 0
    assert not any(path.exists() for path in litter) and keep.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("build", "--bogus"), "No such option: --bogus"),
        (("table", "specs/cifar", "--format", "xml"), "'xml' is not one of 'md', 'csv', 'json'"),
        (("export", "specs/cifar/resnet20.yaml", "-o", "x.onnx", "--layout", "chw"), "is not one of 'nhwc'"),
        (("bench", "m.onnx", "--provider", "tpu"), "'tpu' is not one of 'auto', 'cuda', 'cpu'"),
        (("train", "specs/cifar/resnet20.yaml", "--out", "r", "--precision", "fp8"), "'fp8' is not one of"),
        (("train", "--distribute", "ring", "--out", "r"), "'ring' is not one of 'mirrored', 'multiworker'"),
        (
            ("evaluate", "m.keras", "--batch-size", "0"),
            "'--batch-size': Input should be greater than or equal to 1",
        ),
        (("diff", "specs/resnet50.yaml"), "Missing argument"),
    ],
)
def test_usage_errors_are_one_line_naming_the_help(args: tuple[str, ...], fragment: str) -> None:
    done = cli(*args)
    one_line_error(done, fragment)
    assert done.stderr.rstrip().endswith(f"(see `rescompile {args[0]} --help`)")


def test_small_data_says_which_validation_and_batch_settings_fit(tmp_path: Path) -> None:
    from tests.synthetic import write_cifar_tarball

    tarball = write_cifar_tarball(tmp_path / "tiny.tar.gz", 200, 20)
    base = ("train", "specs/cifar/resnet20.yaml", "--data", str(tarball), "--recipe", "paper")
    done = cli(*base, "--set", "validation=5000", "--out", str(tmp_path / "a"))  # as given: not fitted
    one_line_error(
        done, "validation split (5000 images) leaves no training images (have 200): pass --set validation=20"
    )
    done = cli(*base, "--set", "validation=20", "--batch-size", "500", "--out", str(tmp_path / "b"))
    one_line_error(done, "batch size 500 exceeds the 180 training images: pass --batch-size 45")
