"""Short runs that learn: schedules scaled to the run's length, small-data defaults, `export: best`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from rescompile.errors import RescompileError
from rescompile.train.recipe import load_recipe, overridden_fields, recipe_overrides
from rescompile.train.scaling import describe_schedule, fit_small_data, step_plan
from tests.synthetic import write_cifar_tarball


def test_a_shortened_recipe_keeps_its_schedule_as_fractions_of_the_run() -> None:
    short = load_recipe("paper", recipe_overrides(epochs=12))
    assert short.schedule.run_length == 64000 and short.steps is None
    plan = step_plan(short, steps_per_epoch=41, total_steps=492)
    assert plan.boundaries == [246, 369]  # 32k and 48k of 64k: 50% and 75%
    assert "x0.1 from step 246, x0.01 from step 369 of 492 (scaled" in describe_schedule(short, 41, 492)
    assert step_plan(load_recipe("paper"), 351, 64000).boundaries == [32000, 48000]
    literal = load_recipe("paper", recipe_overrides(["schedule.boundaries=[100, 200]"], epochs=12))
    assert literal.schedule.run_length is None and step_plan(literal, 41, 492).boundaries == [100, 200]
    warm = step_plan(load_recipe("paper-warmup", recipe_overrides(steps=6400)), 351, 6400)
    assert (warm.boundaries, warm.warmup_steps) == ([3200, 4800], 40)
    goyal = step_plan(load_recipe("imagenet-goyal", recipe_overrides(epochs=9)), 100, 900)
    assert (goyal.boundaries, goyal.ramp_steps) == ([300, 600, 800], 50)  # 5 of 90 epochs ramp
    with pytest.raises(RescompileError, match=r"export: best .* needs validation > 0"):
        load_recipe("imagenet-goyal", ["export=best"])


def test_small_data_gets_a_hold_out_batch_and_lr_it_can_learn_with() -> None:
    paper = load_recipe("paper")
    fitted, note = fit_small_data(paper, 600, frozenset())
    assert (fitted.validation, fitted.batch_size, fitted.optimizer.lr) == (60, 16, 0.1 * 16 / 128)
    assert note is not None and "validation 5000 -> 60" in note and "batch 128 -> 16" in note
    overrides = recipe_overrides(["validation=50"], lr=0.05)
    kept, note = fit_small_data(load_recipe("paper", overrides), 600, overridden_fields(overrides))
    assert (kept.validation, kept.batch_size, kept.optimizer.lr) == (50, 16, 0.05)
    assert fit_small_data(paper, 600, frozenset({"batch_size", "validation"})) == (paper, None)
    assert fit_small_data(paper, 50000, frozenset()) == (paper, None)  # CIFAR itself: as written


def test_a_short_run_on_small_data_decays_its_lr_learns_and_exports_its_best_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    keras = pytest.importorskip("keras")
    from rescompile.train.callbacks import RunRecorder
    from rescompile.train.run_dir import BEST_WEIGHTS, read_state
    from rescompile.train.trainer import TrainOptions, train

    applied: list[float] = []

    def record_lr(self, batch: int, logs=None) -> None:  # the rate this step's update uses
        applied.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    monkeypatch.setattr(RunRecorder, "on_train_batch_begin", record_lr, raising=False)
    data = write_cifar_tarball(tmp_path / "cifar.tar.gz", 400, 100)
    run = tmp_path / "run"
    overrides = recipe_overrides(["export=best"], epochs=4)
    options = TrainOptions(
        out=run,
        spec=Path("specs/cifar/resnet20.yaml"),
        data=str(data),
        precision="float32",
        export_onnx=False,
        tensorboard=False,
        given=overridden_fields(overrides),
    )
    summary = train(options, load_recipe("paper", overrides))
    printed = capsys.readouterr().out
    assert "small data (400 images) for recipe paper: validation 5000 -> 40 images" in printed
    assert "batch 128 -> 8 (45 steps an epoch), lr 0.1 -> 0.00625" in printed
    first = next(line for line in printed.splitlines() if line.startswith("training "))
    assert "batch 8, lr 0.00625, x0.1 from step 90, x0.01 from step 135 of 180 (scaled" in first

    base = 0.1 * 8 / 128
    expected = [base] * 90 + [base * 0.1] * 45 + [base * 0.01] * 45
    assert len(applied) == 180 and np.allclose(applied, expected, rtol=1e-6)
    assert summary.test_accuracy > 0.5, "well above chance (0.1) on the colour classes"

    with (run / "metrics.csv").open() as handle:
        val = [float(row["val_accuracy"]) for row in csv.DictReader(handle)]
    state = read_state(run)
    assert summary.exported == "best"
    assert summary.exported_epoch == state.best_epoch == 1 + int(np.argmax(val))
    exported = keras.saving.load_model(run / "model.keras")
    best = keras.saving.load_model(run / "checkpoint.keras")
    best.load_weights(run / BEST_WEIGHTS)
    assert all(np.array_equal(a, b) for a, b in zip(exported.get_weights(), best.get_weights(), strict=True))
    with pytest.raises(RescompileError, match=r"--resume: .* has finished \(epoch 4, step 180; see"):
        train(TrainOptions(out=run, resume=True), None)


def test_resume_names_only_the_fields_given_that_differ() -> None:
    from rescompile.train.trainer import _recipe_changes

    stored = load_recipe("paper", recipe_overrides(epochs=3, lr=0.05))
    again = recipe_overrides(epochs=3)
    assert _recipe_changes(load_recipe("paper", again), stored, overridden_fields(again)) == []
    longer = recipe_overrides(epochs=5)
    assert _recipe_changes(load_recipe("paper", longer), stored, overridden_fields(longer)) == [
        "epochs=5.0, not 3.0"
    ]
    assert _recipe_changes(load_recipe("fast"), stored, frozenset()) == ["recipe fast, not paper"]
