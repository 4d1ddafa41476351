"""The command line's options: help text that shows its defaults and choices, choice lists that
agree with the library's, and options that reach the library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.main import get_command
from typer.testing import CliRunner

from rescompile.cli import app
from rescompile.errors import RescompileError

runner = CliRunner()


def _commands() -> dict:
    """Every command by its path ("train", "experiment gradients"), groups included."""
    group = get_command(app)
    commands = {"": group}
    for name, command in group.commands.items():
        commands[name] = command
        for sub, subcommand in getattr(command, "commands", {}).items():
            commands[f"{name} {sub}"] = subcommand
    return commands


def _help(*args: str) -> str:
    """`rescompile ARGS --help` as words, the table's borders and line breaks removed."""
    done = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "240"})
    assert done.exit_code == 0, done.output
    return " ".join(done.output.replace("│", " ").split())


def test_help_shows_the_defaults_written_in_help_strings() -> None:
    train, evaluate = _help("train"), _help("evaluate")
    for text in (train, evaluate):
        assert "a folder of them) (default: CIFAR through keras.datasets)." in text
    assert "or YAML file (default: paper)." in train
    assert "Where to write confusion.png (default: the model's folder)." in evaluate
    assert "--batch-size <int range> [x>=1] Images per batch" in evaluate


def test_no_help_string_holds_square_brackets_that_rich_markup_would_eat() -> None:
    for name, command in _commands().items():
        for param in command.params:
            assert "[" not in (getattr(param, "help", None) or ""), (name, param.name)


def test_every_command_summary_is_one_line() -> None:
    for name, command in _commands().items():
        summary = (command.help or "").strip().split("\n\n")[0]
        assert summary and "\n" not in summary, (name, summary)


def test_recipe_and_freeze_help_list_their_values() -> None:
    recipes = sorted(path.stem for path in Path("recipes").glob("*.yaml"))
    assert {"paper", "imagenet-goyal", "transfer"} <= set(recipes)
    for command in ("train", "experiment degradation"):
        assert f"Recipe name ({', '.join(recipes)}) or YAML file" in _help(*command.split())
    for command in ("train", "build"):
        text = _help(command)
        assert "--freeze <backbone|N> Freeze `backbone` (the stem and every stage) or a stage count N" in text


def _offered(words: str) -> tuple[str, ...]:
    """What the command line offers (its shell completion) after `words`, e.g. "train s.yaml
    --precision " or "train s.yaml --recipe imagenet-"."""
    current = len(words.split()) + 1 - (not words.endswith(" "))  # the index of the word completed
    line = f"rescompile {words}"
    env = {"_RESCOMPILE_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(current)}
    done = CliRunner().invoke(app, [], env=env, prog_name="rescompile")
    assert done.exit_code == 0, done.output
    return tuple(done.output.split())


def test_every_choice_the_cli_offers_is_one_the_library_accepts(tmp_path: Path) -> None:
    from rescompile.analysis.listing import LIST_FORMATS
    from rescompile.analysis.tables import FORMATS
    from rescompile.serve.runtime import LAYOUTS, PROVIDERS
    from rescompile.spec.schema import Options
    from rescompile.train.trainer import TrainOptions

    for precision in _offered("train s.yaml --precision "):
        TrainOptions(out=tmp_path, precision=precision)
    with pytest.raises(RescompileError, match="--precision must be one of"):
        TrainOptions(out=tmp_path, precision="float64")
    assert _offered("experiment degradation --precision ") == _offered("train s.yaml --precision ")
    for initializer in _offered("experiment gradients --initializer "):
        assert Options(initializer=initializer).initializer == initializer
    assert _offered("export m.keras --layout ") == LAYOUTS
    assert set(_offered("predict m.onnx --provider ")) == set(_offered("bench m.onnx --provider "))
    assert set(_offered("bench m.onnx --provider ")) == {"auto", *PROVIDERS}
    assert _offered("table --format ") == FORMATS
    assert _offered("list --format ") == _offered("predict m.onnx --format ") == LIST_FORMATS


def test_predict_format_json_and_its_hidden_json_alias(tmp_path: Path) -> None:
    from tests.onnx_helpers import export_spec

    model = tmp_path / "r20.onnx"
    export_spec("specs/cifar/resnet20.yaml", model)
    image = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    base = ["predict", str(model), str(image), "--top-k", "2", "--provider", "cpu"]
    formatted = runner.invoke(app, [*base, "--format", "json"])
    assert formatted.exit_code == 0, formatted.output
    results = json.loads(formatted.stdout)
    assert [r["image"] for r in results] == [str(image)] and len(results[0]["top"]) == 2
    aliased = runner.invoke(app, [*base, "--json"])
    assert json.loads(aliased.stdout) == results
    markdown = runner.invoke(app, base)
    assert markdown.stdout.splitlines()[0] == str(image) and "%" in markdown.stdout
    assert "--json" not in _help("predict") and "--format <md|json>" in _help("predict")


def test_batch_sizes_reach_evaluate_and_the_gradients_experiment(monkeypatch, tmp_path: Path) -> None:
    from rescompile.experiments import gradients
    from rescompile.serve import evaluate

    seen = {}

    def fake_evaluate(model_path: Path, **options: object) -> evaluate.Evaluation:
        seen["evaluate"] = options
        return evaluate.Evaluation(0.5, None, np.eye(2, dtype=int), ["a", "b"], "test", tmp_path / "c.png")

    def fake_profile(analysis, *, network: str, setting: str, batch: int = 0) -> gradients.GradientProfile:
        seen.setdefault("gradients", []).append(batch)
        return gradients.GradientProfile("n", ["a", "b"], [1.0, 2.0], [1.0, 2.0], "n", "as written", "x")

    monkeypatch.setattr(evaluate, "evaluate", fake_evaluate)
    monkeypatch.setattr(gradients, "gradient_profile", fake_profile)
    done = runner.invoke(app, ["evaluate", "run", "--batch-size", "64", "--classes", "100"])
    assert done.exit_code == 0, done.output
    assert seen["evaluate"]["batch_size"] == 64 and seen["evaluate"]["classes"] == 100
    args = ["experiment", "gradients", "specs/cifar/resnet20.yaml", "--out", str(tmp_path)]
    done = runner.invoke(app, [*args, "--batch-size", "4"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert seen["gradients"] == [4, 32]


def test_class_names_files_are_read_line_by_line(tmp_path: Path) -> None:
    from rescompile.inputs.class_names import read_class_names

    names = tmp_path / "names.txt"
    names.write_text("  cat \n\ndog\n", encoding="utf-8")
    assert read_class_names(names) == ["cat", "dog"]
    with pytest.raises(RescompileError, match=r"^--class-names .*missing\.txt: No such file"):
        read_class_names(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    "words, expected",
    [
        ("rescompile export m.keras --layout ", ["nhwc", "nchw"]),
        ("rescompile train s.yaml --precision ", ["auto", "float32", "mixed_float16", "mixed_bfloat16"]),
        (
            "rescompile train s.yaml --recipe imagenet-",
            ["imagenet-cosine", "imagenet-goyal", "imagenet-paper"],
        ),
    ],
)
def test_shell_completion_offers_the_choices(words: str, expected: list[str]) -> None:
    assert list(_offered(words.removeprefix("rescompile "))) == expected
