"""`rescompile train`: a spec trained with a recipe, resumable, into a run directory.

RUN_DIR holds: recipe.json, preprocess.json, metrics.csv, state.json, checkpoint.keras (with the
optimizer), loss.png / accuracy.png / lr.png, summary.json, model.keras and model.onnx.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rescompile.analysis.memory import require_memory
from rescompile.errors import RescompileError
from rescompile.fileio import remove_stale_temporaries, write_text_atomic
from rescompile.train.recipe import Recipe

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass
class TrainOptions:
    """Everything `rescompile train` takes besides the recipe."""

    spec: Path
    data: str | None
    out: Path
    precision: str = "float32"
    jit: bool = False
    seed: int = 0
    resume: bool = False
    distribute: str | None = None
    cpu_devices: int = 1
    classes: int = 10
    export_onnx: bool = True
    weights: str | None = None
    freeze: str | None = None
    check_memory: bool = True
    allow_partial: bool = False


def configure_devices(cpu_devices: int) -> None:
    """Split the CPU into logical devices (for testing tf.distribute without GPUs)."""
    import tensorflow as tf

    if cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices
            )
        except RuntimeError as exc:
            raise RescompileError(f"--cpu-devices must be set before TensorFlow starts ({exc})") from None


def strategy_for(name: str | None):
    """A tf.distribute strategy, or the default one."""
    import tensorflow as tf

    if name is None:
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise RescompileError(f"--distribute must be mirrored or multiworker, got {name!r}")


def _split(dataset, validation: int, seed: int):
    order = np.random.default_rng(seed).permutation(len(dataset.x_train))
    if validation >= len(order):
        raise RescompileError(f"validation split {validation} leaves no training images (have {len(order)})")
    val, train = order[:validation], order[validation:]
    return (dataset.x_train[train], dataset.y_train[train]), (dataset.x_train[val], dataset.y_train[val])


def _one_hot(data, classes: int):
    import tensorflow as tf

    return data.map(lambda x, y: (x, tf.one_hot(y, classes)))


def _length(recipe: Recipe, steps_per_epoch: int) -> tuple[int, int]:
    """(epochs to run, total optimizer steps)."""
    if recipe.steps is not None:
        return math.ceil(recipe.steps / steps_per_epoch), recipe.steps
    if recipe.epochs is None:
        raise RescompileError("the recipe sets neither steps nor epochs")
    epochs = math.ceil(recipe.epochs)
    return epochs, round(recipe.epochs * steps_per_epoch)


def _compile(model, recipe: Recipe, optimizer, jit: bool) -> None:
    import keras

    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=jit,
    )


def _pretrained(model, graph, options: TrainOptions) -> None:
    """Load --weights by layer name and apply --freeze (backbone, or a number of stages)."""
    from rescompile.keras_backend.model import freeze, load_weights

    if options.weights:
        loaded = load_weights(model, options.weights, graph=graph, allow_partial=options.allow_partial)
        print(f"loaded {loaded} layers from {options.weights}", flush=True)
    if options.freeze:
        stages = len(graph.stages) if options.freeze == "backbone" else int(options.freeze)
        if stages > len(graph.stages):
            raise RescompileError(
                f"--freeze must be backbone or 0..{len(graph.stages)}, got {options.freeze}"
            )
        print(f"froze {len(freeze(model, graph, stages))} layers (stem and {stages} stages)", flush=True)


def _unfreeze(model) -> None:
    """Make every layer trainable again, except BatchNorm, which stays in inference mode."""
    for layer in model.layers:
        layer.trainable = type(layer).__name__ != "BatchNormalization" or layer.trainable


def _fresh_model(options: TrainOptions, classes: int, input_size: int):
    from rescompile.keras_backend.build import build

    result = build(
        options.spec,
        options.out,
        input_size=input_size,
        classes=classes,
        save=False,
        check_memory=options.check_memory,
    )
    return result


RUN_FILES = (
    "checkpoint.keras",
    "state.json",
    "metrics.csv",
    "recipe.json",
    "preprocess.json",
    "model.keras",
    "model.onnx",
    "summary.json",
)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold RUN_DIR/.lock while training: a second `train` into the same folder is refused.

    An advisory lock (flock) that the kernel releases when the process dies, so a killed run
    never leaves a stale lock behind.
    """
    import fcntl

    handle = (run_dir / ".lock").open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise RescompileError(
                f"{run_dir}: another `rescompile train` ({owner}) is writing to it"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


def train(options: TrainOptions, recipe: Recipe) -> dict:
    """Train, checkpointing every epoch; returns the summary written to summary.json."""
    configure_devices(options.cpu_devices)
    if options.precision not in PRECISIONS:
        raise RescompileError(
            f"--precision must be one of {', '.join(PRECISIONS)}, got {options.precision!r}"
        )
    run_dir = options.out
    state_path = run_dir / "state.json"
    state: dict = {}
    if options.resume:
        state, recipe = _resumable(run_dir)
        options.seed = state["seed"]
    elif state_path.exists():
        raise RescompileError(
            f"{run_dir} already holds a run: pass --resume to continue it, or another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        return _train(options, recipe, state)


def _resumable(run_dir: Path) -> tuple[dict, Recipe]:
    """The state and recipe of an interrupted run, checked, with killed writes' temporaries removed."""
    for name in RUN_FILES:
        remove_stale_temporaries(run_dir, name)
    state_path = run_dir / "state.json"
    if not state_path.is_file():
        raise RescompileError(f"--resume: {run_dir} has no state.json (no completed epoch to resume from)")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("seed"), int):
            raise ValueError("no seed")
        for key in ("epoch", "step"):
            if not isinstance(state.get(key), int) or state[key] < 0:
                raise ValueError(f"no {key}")
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise RescompileError(f"--resume: {state_path} is damaged ({exc}); start a new run") from None
    try:
        recipe = Recipe.model_validate_json((run_dir / "recipe.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RescompileError(f"--resume: {run_dir} has no recipe.json; start a new run") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).splitlines()[0]
        raise RescompileError(f"--resume: {run_dir / 'recipe.json'} is damaged ({first})") from None
    checkpoint = run_dir / "checkpoint.keras"
    if not checkpoint.is_file():
        raise RescompileError(f"--resume: {run_dir} has no checkpoint.keras; start a new run")
    if not zipfile.is_zipfile(checkpoint):
        raise RescompileError(f"--resume: {checkpoint} is damaged (not a .keras archive); start a new run")
    return state, recipe


def _load_checkpoint(path: Path):
    import keras

    try:
        return keras.saving.load_model(path)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RescompileError(f"--resume: {path} is damaged ({first}); start a new run") from None


def _train(options: TrainOptions, recipe: Recipe, state: dict) -> dict:
    import keras

    from rescompile.data.datasets import load_dataset
    from rescompile.train.callbacks import Plateau, RunRecorder, StopAtStep, read_metrics
    from rescompile.train.schedule import make_optimizer, make_schedule
    from rescompile.train.tfdata import evaluation_dataset, fit_normalization, training_dataset

    run_dir = options.out

    from rescompile.analysis.analyze import analyze

    analysis = analyze(options.spec)
    if options.check_memory:
        require_memory(analysis, recipe.batch_size, training=True)
    dataset = load_dataset(options.data, analysis.spec.input.size, options.classes)
    (x_train, y_train), (x_val, y_val) = _split(dataset, recipe.validation, options.seed)
    keras.utils.set_random_seed(options.seed)
    keras.mixed_precision.set_global_policy(options.precision)
    normalization = fit_normalization(
        x_train, recipe.normalize, analysis.spec.preprocess.model_dump(mode="json")
    )
    steps_per_epoch = len(x_train) // recipe.batch_size
    if steps_per_epoch == 0:
        raise RescompileError(f"batch size {recipe.batch_size} exceeds the {len(x_train)} training images")
    epochs, total_steps = _length(recipe, steps_per_epoch)
    if not options.resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        state = {"seed": options.seed, "epoch": 0, "step": 0, "spec": str(options.spec), "wall_seconds": 0.0}
        write_text_atomic(run_dir / "recipe.json", recipe.model_dump_json(indent=2))
    preprocess = normalization.as_preprocess()
    write_text_atomic(run_dir / "preprocess.json", json.dumps(preprocess))

    strategy = strategy_for(options.distribute)
    state["replicas"] = strategy.num_replicas_in_sync
    finetune = recipe.finetune
    finetune_epochs = math.ceil(finetune.epochs) if finetune else 0
    with strategy.scope():
        if options.resume:
            model = _load_checkpoint(run_dir / "checkpoint.keras")
            schedule = model.optimizer.learning_rate
        else:
            built = _fresh_model(options, dataset.classes, x_train.shape[1])
            model = built.model
            _pretrained(model, built.analysis.graph, options)
            schedule = make_schedule(recipe, steps_per_epoch, total_steps)
            _compile(model, recipe, make_optimizer(recipe, schedule), options.jit)
    first_epoch = state["epoch"]
    rows = read_metrics(run_dir / "metrics.csv", first_epoch)
    if not len(x_val):  # validation: 0 validates on the test set, as the paper's curves do
        x_val, y_val = dataset.x_test, dataset.y_test
    val_data = _one_hot(evaluation_dataset(x_val, y_val, 256, normalization), dataset.classes)
    recorder = RunRecorder(run_dir, state, rows, recipe.batch_size, steps_per_epoch)

    def fit(start: int, stop: int, callbacks: list) -> None:
        train_data = _one_hot(
            training_dataset(
                x_train, y_train, recipe.batch_size, recipe.augment, normalization, options.seed, start
            ),
            dataset.classes,
        )
        model.fit(
            train_data,
            epochs=stop,
            initial_epoch=start,
            steps_per_epoch=steps_per_epoch,
            validation_data=val_data,
            callbacks=[*callbacks, recorder],
            verbose=1 if sys.stdout.isatty() else 2,
            shuffle=False,
        )
        if recorder.nan_step is not None:
            kept = (
                f"the last good checkpoint (epoch {state['epoch']}) is kept in {run_dir}"
                if (run_dir / "checkpoint.keras").is_file()
                else "no epoch finished, so there is no checkpoint"
            )
            raise RescompileError(f"loss became NaN at step {recorder.nan_step}; training stopped; {kept}")

    if state.get("phase", 1) == 1:
        callbacks: list = [StopAtStep(total_steps)]
        if recipe.plateau is not None:
            plateau = recipe.plateau
            callbacks.append(Plateau(schedule, state, plateau.factor, plateau.patience, plateau.min_lr))
        if first_epoch < epochs:
            fit(first_epoch, epochs, callbacks)
        if finetune:
            with strategy.scope():
                _unfreeze(model)
                tuned = recipe.model_copy(
                    update={
                        "schedule": recipe.schedule.model_copy(update={"kind": "constant", "warmup_steps": 0})
                    }
                )
                tuned = tuned.model_copy(
                    update={"optimizer": recipe.optimizer.model_copy(update={"lr": finetune.lr})}
                )
                _compile(
                    model,
                    recipe,
                    make_optimizer(tuned, make_schedule(tuned, steps_per_epoch, 1)),
                    options.jit,
                )
            state.update(phase=2, phase2_start_step=state["step"])
            print(
                f"fine-tuning the whole network at lr {finetune.lr:g} for {finetune_epochs} epochs",
                flush=True,
            )
    if finetune:
        recorder.step_offset = state["phase2_start_step"]
        fit(max(state["epoch"], epochs), epochs + finetune_epochs, [])
    return _finish(options, analysis, model, dataset, normalization, preprocess, state, rows)


def _finish(options, analysis, model, dataset, normalization, preprocess, state, rows) -> dict:
    """Test accuracy, plots, the final model (no optimizer) and its ONNX export, summary.json."""
    import keras

    from rescompile.keras_backend.build import model_record, save_model
    from rescompile.train.plots import plot_curves
    from rescompile.train.tfdata import evaluation_dataset

    run_dir = options.out
    test_data = _one_hot(
        evaluation_dataset(dataset.x_test, dataset.y_test, 256, normalization), dataset.classes
    )
    started = time.perf_counter()
    _, test_accuracy = model.evaluate(test_data, verbose=0)
    keras.mixed_precision.set_global_policy("float32")
    final = _fresh_model(options, dataset.classes, dataset.x_train.shape[1])
    final.model.set_weights(model.get_weights())
    analysis = final.analysis  # the network trained: its classifier has the data's classes
    record = model_record(analysis, include_top=True, preprocess=preprocess, class_names=dataset.class_names)
    save_model(final.model, run_dir / "model.keras", record)
    if options.export_onnx:
        from rescompile.onnx_backend.emit import ExportOptions
        from rescompile.onnx_backend.export import onnx_options, write_onnx

        export_options = onnx_options(ExportOptions(), analysis, record)
        write_onnx(final.model, analysis, run_dir / "model.onnx", export_options)
    if rows:
        plot_curves(rows, run_dir)
    images_per_second = [float(r["images_per_second"]) for r in rows]
    summary = {
        "spec": analysis.spec.name,
        "spec_file": str(options.spec),
        "dataset": dataset.name,
        "paper_test_error": analysis.spec.expect.test_error_on(dataset.name),
        "epochs": state["epoch"],
        "steps": state["step"],
        "test_accuracy": float(test_accuracy),
        "best_val_accuracy": state.get("best_val_accuracy"),
        "wall_seconds": state.get("wall_seconds", 0.0) + (time.perf_counter() - started),
        "images_per_second": float(np.median(images_per_second)) if images_per_second else None,
        "params": analysis.cost.params,
        "macs": analysis.cost.macs,
        "precision": options.precision,
        "distribute": options.distribute,
        "replicas": state.get("replicas", 1),
    }
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary
