"""`rescompile train`: a spec trained with a recipe, resumable, into a run directory.

The run directory's files are described in `rescompile.train.run_dir`. `train()` opens a run
(fresh, or resumed from its own files), prepares its data and model, fits its phases (the
recipe's, then a fine-tune of the whole network if the recipe has one), then finishes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rescompile.analysis.analyze import Analysis, analyze_network
from rescompile.analysis.memory import require_memory
from rescompile.checkpoints.preprocess import checkpoint_preprocess
from rescompile.errors import Interrupted, RescompileError, printable
from rescompile.fileio import remove_stale_temporaries, write_text_atomic
from rescompile.ir.lower import check_spec
from rescompile.ir.network import Network, compile_network, retarget
from rescompile.ir.target import Target
from rescompile.keras_backend.archive import interface, keras_load_recursion_limit, read_keras_config
from rescompile.keras_backend.model import (
    apply_l2,
    recursion_limit,
    restore_seed_states,
    stages_to_freeze,
)
from rescompile.options import EVAL_BATCH, PRECISION_CHOICES, PrecisionChoice
from rescompile.quiet import import_keras_quietly
from rescompile.spec import load_spec
from rescompile.spec.schema import Preprocess
from rescompile.train.compute import resolve_precision
from rescompile.train.recipe import Recipe, field_value
from rescompile.train.run_dir import (
    BEST_WEIGHTS,
    RECIPE,
    SPEC,
    STATE,
    SUMMARY,
    MetricsRow,
    PlateauState,
    RunState,
    RunSummary,
    read_recipe,
    read_state,
    write_spec,
    write_summary,
)
from rescompile.train.scaling import describe_schedule, fit_small_data

if TYPE_CHECKING:
    from rescompile.inputs.tfdata import Shard
    from rescompile.train.inputs import Inputs


@dataclass(kw_only=True)
class TrainOptions:
    """Everything `rescompile train` takes besides the recipe."""

    out: Path
    spec: Path | None = None
    """None with `resume`: the run's own spec.json."""
    data: str | None = None
    val_data: str | None = None
    """A separate evaluation folder or TFRecord glob (image folders and TFRecords only)."""
    strict: bool = False
    """Fail on a truncated or undecodable image instead of skipping it."""
    precision: PrecisionChoice = "auto"
    """auto: float16 on tensor-core GPUs, bfloat16 on CPUs that compute it natively, else float32."""
    jit: bool | None = None
    """XLA-compile the training step; None: Keras' auto (on GPUs without a distribution strategy)."""
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
    weights_format: str | None = None
    """The naming of a PyTorch checkpoint in `weights` (torchvision, timm; None: detected)."""
    tensorboard: bool = True
    """TensorBoard event files in RUN_DIR/logs."""
    worker_timeout: float = 300.0
    """Seconds `--distribute multiworker` waits for the other tasks of TF_CONFIG to be reachable."""
    given: frozenset[str] = frozenset()
    """Recipe fields the command line set (`batch_size`, `optimizer.lr`, ...): small data keeps them."""

    def __post_init__(self) -> None:
        """Values out of range are one-line errors naming the option, raised before anything runs."""
        if self.precision not in PRECISION_CHOICES:
            raise RescompileError(
                f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}"
            )
        if not 0 <= self.seed < 2**31:
            raise RescompileError(f"--seed must be between 0 and {2**31 - 1}, got {self.seed}")
        if self.resume and self.jit is not None:
            raise RescompileError("--jit/--no-jit: a resumed run keeps the XLA setting it was compiled with")
        if not 1 <= self.cpu_devices <= 64:
            raise RescompileError(f"--cpu-devices must be between 1 and 64, got {self.cpu_devices}")
        if not 0 < self.worker_timeout <= 86_400:
            raise RescompileError(
                f"--worker-timeout must be in (0, 86400] seconds, got {self.worker_timeout}"
            )


def configure_devices(cpu_devices: int) -> None:
    """Split the CPU into logical devices (for testing tf.distribute without GPUs)."""
    if cpu_devices > 1:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices
            )
        except RuntimeError as exc:
            raise RescompileError(f"--cpu-devices must be set before TensorFlow starts ({exc})") from None


def worker_shard(distribute: str | None) -> Shard:
    """This process's place among the workers of `TF_CONFIG` (one shard without multiworker):
    a `chief` task first, then the `worker` tasks in order."""
    from rescompile.inputs.tfdata import Shard

    if distribute != "multiworker" or not os.environ.get("TF_CONFIG"):
        return Shard()  # no TF_CONFIG: TensorFlow runs the strategy as one local worker
    try:
        config = json.loads(os.environ.get("TF_CONFIG", ""))
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        index = int(task["index"]) + (len(chiefs) if task["type"] == "worker" else 0)
        if task["type"] not in ("chief", "worker") or not 0 <= index < len(chiefs) + len(workers):
            raise ValueError(f"task {task}")
    except (ValueError, KeyError, TypeError) as exc:
        raise RescompileError(
            f"--distribute multiworker needs TF_CONFIG naming the cluster's chief/worker tasks and this"
            f" task ({type(exc).__name__}: {exc}); see README, 'Training on several machines'"
        ) from None
    return Shard(index, len(chiefs) + len(workers))


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


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
        return _multi_worker_strategy()
    raise RescompileError(f"--distribute must be mirrored or multiworker, got {name!r}")


def _multi_worker_strategy():
    """MultiWorkerMirroredStrategy with the reduce() Keras 3's TF trainer needs across workers
    (keras-team/keras#20585): a nest of values (fit and evaluate reduce a whole (x, y) batch
    before building the model), and scalars asked for axis=0 (each step's loss and metrics)
    averaged across replicas, as MirroredStrategy does; the collective strategy refuses both
    once there are two workers."""
    import tensorflow as tf

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def one(v):
                local = getattr(self.experimental_local_results(v)[0], "shape", None)
                scalar = local is not None and local.rank == 0
                return super(MultiWorkerStrategy, self).reduce(reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(one, value)

    return MultiWorkerStrategy()


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


def _compile(model, recipe: Recipe, optimizer, jit: bool | None) -> None:
    """Cross-entropy with the recipe's label smoothing; top-1 and (over 5 classes) top-5 accuracy."""
    import keras

    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if model.output.shape[-1] > 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=metrics,
        jit_compile="auto" if jit is None else jit,
    )


def _initialise(model, graph, run: _Run) -> None:
    """Zero-init the residual branches' last BN (if the recipe asks), load --weights by layer name
    and apply --freeze (backbone, or a number of stages)."""
    from rescompile.keras_backend.model import freeze, load_weights, zero_init_residual

    if run.recipe.l2:
        apply_l2(model, run.recipe.l2)
    if run.recipe.zero_init_residual:
        print(f"zero-initialised the last BatchNorm of {zero_init_residual(model, graph)} blocks", flush=True)

    options = run.options
    if options.weights:
        loaded = load_weights(
            model,
            options.weights,
            graph=graph,
            allow_partial=options.allow_partial,
            weights_format=options.weights_format,
        )
        print(f"loaded {loaded} layers from {options.weights}", flush=True)
    stages = stages_to_freeze(options.freeze, len(graph.stages))
    if stages:
        print(f"froze {len(freeze(model, graph, stages))} layers (stem and {stages} stages)", flush=True)


def _unfreeze(model) -> None:
    """Make every layer trainable again, except BatchNorm, which stays in inference mode."""
    for layer in model.layers:
        layer.trainable = type(layer).__name__ != "BatchNormalization" or layer.trainable


RUN_FILES = (
    "checkpoint.keras",
    BEST_WEIGHTS,
    STATE,
    "metrics.csv",
    RECIPE,
    SPEC,
    "preprocess.json",
    "model.keras",
    "model.onnx",
    SUMMARY,
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


def train(options: TrainOptions, recipe: Recipe | None) -> RunSummary:
    """Train, checkpointing every epoch; returns the summary written to summary.json. With
    `options.resume`, the run continues from its own files (spec, recipe, data, seed); a `recipe`
    or `options.spec`/`options.data` given then must be the run's."""
    from rescompile.inputs.sources import require_data

    require_data(options.data, "--data")  # said at once, not after TensorFlow's start-up
    require_data(options.val_data, "--val-data")
    import_keras_quietly()  # a base install is told which extra to add before anything is written
    configure_devices(options.cpu_devices)
    if options.jit and options.distribute == "multiworker" and not _has_gpu():
        raise RescompileError(
            "--jit with --distribute multiworker needs GPUs: XLA has no cross-worker collectives on CPU"
        )
    shard = worker_shard(options.distribute)
    if shard.count > 1:
        from rescompile.train.cluster import wait_for_cluster

        wait_for_cluster(options.worker_timeout)
    if shard.index == 0:
        return _train(options, recipe, shard)
    # Only the chief writes the run directory; another worker writes to a scratch copy of it.
    with tempfile.TemporaryDirectory(prefix=f"rescompile-worker{shard.index}-") as scratch:
        if options.resume:
            for name in RUN_FILES:
                if (options.out / name).is_file():
                    shutil.copy2(options.out / name, Path(scratch) / name)
        return _train(dataclasses.replace(options, out=Path(scratch)), recipe, shard)


def _train(options: TrainOptions, recipe: Recipe | None, shard: Shard) -> RunSummary:
    """Train into options.out (the run directory, or a worker's scratch copy)."""
    run_dir = options.out
    if options.resume:
        state, recipe, spec_path = _resumed(options, recipe)
    elif (run_dir / STATE).exists():
        raise RescompileError(
            f"{run_dir} already holds a run: pass --resume to continue it, or another --out"
        )
    elif options.spec is None or recipe is None:
        raise RescompileError("train needs a SPEC and a recipe (or --resume --out RUN_DIR)")
    else:
        spec_path = options.spec
        state = RunState(
            seed=options.seed,
            epoch=0,
            step=0,
            data=recorded_data(options.data),
            val_data=recorded_data(options.val_data),
            classes=options.classes,
        )
    precision, why = resolve_precision(options.precision, state.precision, options.resume)
    options = dataclasses.replace(options, precision=precision)
    state = state.model_copy(update={"precision": precision})
    spec = load_spec(spec_path)
    preprocess = checkpoint_preprocess(options.weights)
    if preprocess is not None:  # a PyTorch checkpoint's own input normalisation (spec.json keeps it)
        spec = spec.model_copy(update={"preprocess": Preprocess.model_validate(preprocess.model_dump())})
    own = analyze_network(compile_network(spec))  # a bad spec is refused before the data is opened
    stages_to_freeze(options.freeze, len(own.graph.stages))
    if options.check_memory:
        require_memory(own, recipe.batch_size, training=True)
    run = _prepare(
        options, recipe, state, network=own.network, spec_path=spec_path, shard=shard
    )  # bad data: nothing written
    analysis = run.analysis
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        _record(run)
        schedule = describe_schedule(run.recipe, run.steps_per_epoch, run.total_steps)
        print(  # paths, the data's name and the CPU's model name: one line, escapes shown
            printable(
                f"training {analysis.spec.name} ({spec_path}) on {run.inputs.name}, recipe {recipe.name},"
                f" into {run_dir}"
                + (f", resuming after epoch {state.epoch}" if options.resume else "")
                + f"; {precision} ({why}); batch {run.recipe.batch_size}, {schedule}"
            ),
            flush=True,
        )
        for note in run.notes:
            print(printable(note), flush=True)
        try:
            model = _fit_phases(run)
        except KeyboardInterrupt:
            raise Interrupted(_resume_hint(run)) from None
        return _finish(run, model)


def _resume_hint(run: _Run) -> str:
    """What an interrupted run leaves, and the command that continues it."""
    if not (run.dir / "checkpoint.keras").is_file():
        return f"interrupted before the first epoch ended: nothing to resume in {run.dir}"
    return (
        f"interrupted; the last checkpoint (epoch {run.state.epoch}, step {run.state.step}) is"
        f" {run.dir / 'checkpoint.keras'}: continue with `rescompile train --resume --out {run.dir}`"
        " (the interrupted epoch restarts)"
    )


def recorded_data(data: str | None) -> str | None:
    """The data source as the run records it: an existing path made absolute (so `--resume`
    works from any directory), anything else as given."""
    if data is not None and Path(data).exists():
        return str(Path(data).resolve())
    return data


def _resumed(options: TrainOptions, recipe: Recipe | None) -> tuple[RunState, Recipe, Path]:
    """The state, recipe and spec of an interrupted run, checked against what the command gives,
    with killed writes' temporaries removed."""
    run_dir = options.out
    for name in RUN_FILES:
        remove_stale_temporaries(run_dir, name)
    state = read_state(run_dir)
    if (run_dir / SUMMARY).is_file():
        raise RescompileError(
            f"--resume: {run_dir} has finished (epoch {state.epoch}, step {state.step}; see"
            f" {run_dir / SUMMARY}): nothing to resume; `rescompile evaluate {run_dir} --data ...`"
            " scores it again, a new --out trains anew"
        )
    stored = read_recipe(run_dir)
    checkpoint = run_dir / "checkpoint.keras"
    if not checkpoint.is_file():
        raise RescompileError(f"--resume: {run_dir} has no checkpoint.keras; start a new run")
    if not zipfile.is_zipfile(checkpoint):
        raise RescompileError(f"--resume: {checkpoint} is damaged (not a .keras archive); start a new run")
    spec_path = run_dir / SPEC
    if not spec_path.is_file():
        raise RescompileError(f"--resume: {run_dir} has no {SPEC}; start a new run")
    given = load_spec(options.spec) if options.spec is not None else None
    if given is not None:
        check_spec(given)  # a broken SPEC says what is wrong with it, not that it differs
    if given is not None and given.model_dump() != load_spec(spec_path).model_dump():
        raise RescompileError(
            f"--resume: {options.spec} is not the spec {run_dir} trains ({spec_path});"
            " drop SPEC to continue it"
        )
    if options.data is not None and recorded_data(options.data) != state.data:
        raise RescompileError(
            f"--resume: {run_dir} trains on {state.data or 'keras.datasets CIFAR'},"
            f" not --data {options.data}; drop --data to continue it"
        )
    if options.val_data is not None and recorded_data(options.val_data) != state.val_data:
        raise RescompileError(
            f"--resume: {run_dir} evaluates on {state.val_data or 'its --data'}, not --val-data"
            f" {options.val_data}; drop --val-data to continue it"
        )
    changed = _recipe_changes(recipe, stored, options.given)
    if changed:
        raise RescompileError(
            f"--resume: the recipe differs from the run's {run_dir / RECIPE} ({', '.join(changed)});"
            " drop --recipe/--set/--epochs to continue it, or start a new --out"
        )
    return state, stored, spec_path


def _recipe_changes(recipe: Recipe | None, stored: Recipe, given: frozenset[str]) -> list[str]:
    """What a resumed run's command line asks for that the run's recipe does not have: another
    recipe, or a field given (`--set`, `--epochs`, ...) with another value than the run's."""
    if recipe is None:
        return []
    if recipe.name != stored.name:
        return [f"recipe {recipe.name}, not {stored.name}"]
    return [
        f"{key}={field_value(recipe, key)}, not {field_value(stored, key)}"
        for key in sorted(given)
        if field_value(recipe, key) != field_value(stored, key)
    ]


@dataclass
class _Run:
    """A run being trained: its options, recipe and state, and the data and lengths derived."""

    options: TrainOptions
    recipe: Recipe
    state: RunState
    spec_path: Path
    analysis: Analysis
    """The network trained: the spec compiled for the data (its image size and classes)."""
    inputs: Inputs
    strategy: object
    """The tf.distribute strategy (made before TensorFlow runs anything: collectives need it)."""
    steps_per_epoch: int
    epochs: int
    total_steps: int
    rows: list[MetricsRow] = field(default_factory=list)
    """metrics.csv's rows so far."""
    notes: list[str] = field(default_factory=list)
    """What train says after its first line: how the data was split, what small data changed."""
    source: str = ""
    """The network's generated Keras module, once printed."""

    @property
    def dir(self) -> Path:
        return self.options.out

    def one_hot(self, data):
        return _one_hot(data, len(self.inputs.class_names))

    def fresh_model(self):
        """The network's Keras model, freshly initialised (its module, printed once and named after
        the run's own spec.json, written into the run)."""
        from rescompile.keras_backend.build import build, module_source

        self.source = self.source or module_source(self.analysis, label=str(self.spec_path))
        return build(self.analysis, self.dir, save=False, check_memory=False, source=self.source)


def _prepare(
    options: TrainOptions, recipe: Recipe, state: RunState, *, network: Network, spec_path: Path, shard: Shard
) -> _Run:
    """Open the data (splits, hold-out, normalisation), fit a fresh run's recipe to small data and
    work out the run's length. Validation holds out `recipe.validation` training images; with 0 it
    uses the test split, as the paper's curves do."""
    import keras

    from rescompile.inputs.sources import open_data
    from rescompile.train.inputs import inputs_from, training_images

    strategy = strategy_for(options.distribute)
    opened = open_data(state.data, state.val_data, state.classes, seed=state.seed, strict=options.strict)
    notes = []
    if not options.resume:
        recipe, note = fit_small_data(recipe, training_images(opened), options.given)
        notes += [note] if note else []
    if recipe.batch_size % shard.count:
        raise RescompileError(
            f"batch size {recipe.batch_size} does not split evenly over {shard.count} workers"
        )
    inputs = inputs_from(
        opened,
        recipe,
        state.seed,
        spec=network.spec.preprocess,
        size=network.spec.input.size,
        strict=options.strict,
    )
    target = Target(input_size=inputs.image_size, classes=len(inputs.class_names))
    analysis = analyze_network(retarget(network, target))
    steps_per_epoch = inputs.steps_per_epoch(recipe.batch_size, shard)
    if steps_per_epoch == 0:
        raise RescompileError(
            f"batch size {recipe.batch_size} exceeds the {inputs.train_count} training images:"
            f" pass --batch-size {max(1, inputs.train_count // 4)}"
        )
    epochs, total_steps = _length(recipe, steps_per_epoch)
    if options.resume:
        _check_resumed_state(options.out, state, inputs, epochs=epochs, total_steps=total_steps)
    keras.utils.set_random_seed(state.seed)
    keras.mixed_precision.set_global_policy(options.precision)
    return _Run(
        options, recipe, state, spec_path, analysis, inputs, strategy, steps_per_epoch, epochs, total_steps,
        notes=notes + inputs.notes,
    )  # fmt: skip


def _check_resumed_state(run_dir: Path, state: RunState, inputs, *, epochs: int, total_steps: int) -> None:
    """A resumed run's state.json against the run's own recipe (its length), its data (classes
    and image size) and its checkpoint, before anything is written."""
    checkpoint = run_dir / "checkpoint.keras"
    try:
        shape, classes = interface(read_keras_config(checkpoint))
    except RescompileError as exc:
        raise RescompileError(f"--resume: {exc}; start a new run") from None
    data = state.data or "keras.datasets CIFAR"
    if classes is not None and classes != len(inputs.class_names):
        raise RescompileError(
            f"--resume: {checkpoint} classifies {classes} classes, but the run's data ({data})"
            f" has {len(inputs.class_names)}; start a new run"
        )
    if shape is not None and tuple(shape[:2]) != (inputs.image_size, inputs.image_size):
        raise RescompileError(
            f"--resume: {checkpoint} takes {shape[0]}x{shape[1]} images, but the run's data ({data})"
            f" is read at {inputs.image_size}x{inputs.image_size}; start a new run"
        )
    if state.epoch > epochs or state.step > total_steps:
        raise RescompileError(
            f"--resume: {run_dir / STATE} says epoch {state.epoch}, step {state.step}, past the end of"
            f" the run's recipe (epoch {epochs}, step {total_steps}); start a new run"
        )


def _record(run: _Run) -> None:
    """Write the run's spec and recipe (on a fresh run) and its preprocessing; a fresh run builds
    from its own spec.json from then on."""
    if not run.options.resume:
        run.spec_path = write_spec(run.dir, run.analysis.spec.model_dump(mode="json"))
        write_text_atomic(run.dir / RECIPE, run.recipe.model_dump_json(indent=2))
    write_text_atomic(run.dir / "preprocess.json", run.inputs.normalization.as_json())


def _load_checkpoint(path: Path):
    import keras

    try:
        limit = keras_load_recursion_limit(path)
    except RescompileError as exc:
        raise RescompileError(f"--resume: {exc}; start a new run") from None
    try:
        with recursion_limit(limit):
            return keras.saving.load_model(path)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RescompileError(f"--resume: {path} is damaged ({first}); start a new run") from None


def _model(run: _Run, strategy):
    """(model, its learning-rate schedule): the checkpoint's on resume, else a fresh one with
    --weights loaded and --freeze applied, compiled with the recipe's optimizer."""
    from rescompile.train.schedule import make_optimizer, make_schedule

    with strategy.scope():
        if run.options.resume:
            model = _load_checkpoint(run.dir / "checkpoint.keras")
            restore_seed_states(model, run.state.seed_states)
            apply_l2(model, run.recipe.l2)  # a variable's regulariser is not saved with it
            return model, model.optimizer.learning_rate
        built = run.fresh_model()
        _initialise(built.model, built.analysis.graph, run)
        schedule = make_schedule(run.recipe, run.steps_per_epoch, run.total_steps)
        _compile(built.model, run.recipe, make_optimizer(run.recipe, schedule), run.options.jit)
        return built.model, schedule


def _training_data(run: _Run, strategy, start: int):
    """The training batches from epoch `start`: one pipeline, split over replicas by Keras; with
    several workers, one per worker reading only its own block of each global batch."""
    from rescompile.inputs.tfdata import Shard

    if run.options.distribute != "multiworker":
        return run.one_hot(run.inputs.training(run.recipe, run.state.seed, start, Shard()))

    def worker_pipeline(context):
        replicas = strategy.num_replicas_in_sync // context.num_input_pipelines
        shard = Shard(context.input_pipeline_id, context.num_input_pipelines, replicas)
        return run.one_hot(run.inputs.training(run.recipe, run.state.seed, start, shard))

    return strategy.distribute_datasets_from_function(worker_pipeline)


def _fit(run: _Run, model, strategy, recorder, start: int, stop: int, callbacks: list) -> None:
    """Epochs start..stop of one phase, with the batches of those epochs (exact on resume)."""
    train_data = _training_data(run, strategy, start)
    if run.options.tensorboard:
        import keras

        callbacks = [*callbacks, keras.callbacks.TensorBoard(log_dir=str(run.dir / "logs"))]
    from rescompile.inputs.streaming import data_errors

    with data_errors(len(run.inputs.class_names)):
        model.fit(
            train_data,
            epochs=stop,
            initial_epoch=start,
            steps_per_epoch=run.steps_per_epoch,
            validation_data=run.one_hot(run.inputs.validation(EVAL_BATCH)),
            callbacks=[*callbacks, recorder],
            verbose=1 if sys.stdout.isatty() else 2,
            shuffle=False,
        )
    if recorder.nan_step is not None:
        kept = (
            f"the last good checkpoint (epoch {run.state.epoch}) is kept in {run.dir}"
            if (run.dir / "checkpoint.keras").is_file()
            else "no epoch finished, so there is no checkpoint"
        )
        raise RescompileError(f"loss became NaN at step {recorder.nan_step}; training stopped; {kept}")


def _fit_phases(run: _Run):
    """The recipe's phase (until its step or epoch count), then the fine-tune phase if any."""
    from rescompile.train.callbacks import Plateau, RunRecorder, StopAtStep
    from rescompile.train.run_dir import read_metrics

    strategy = run.strategy
    run.state.replicas = strategy.num_replicas_in_sync
    model, schedule = _model(run, strategy)
    recipe, state = run.recipe, run.state
    run.rows = read_metrics(run.dir / "metrics.csv", state.epoch)
    recorder = RunRecorder(
        run.dir, state, run.rows, recipe.batch_size, run.steps_per_epoch, keep_best=recipe.export == "best"
    )
    finetune = recipe.finetune
    if state.phase == 1:
        callbacks: list = [StopAtStep(run.total_steps)]
        if recipe.plateau is not None:
            plateau = recipe.plateau
            state.plateau = state.plateau or PlateauState()
            callbacks.append(
                Plateau(schedule, state.plateau, plateau.factor, plateau.patience, plateau.min_lr)
            )
        if state.epoch < run.epochs:
            _fit(run, model, strategy, recorder, state.epoch, run.epochs, callbacks)
        if finetune:
            _start_finetune(run, model, strategy)
    if finetune:
        recorder.step_offset = state.phase2_start_step
        finetune_end = run.epochs + math.ceil(finetune.epochs)
        _fit(run, model, strategy, recorder, max(state.epoch, run.epochs), finetune_end, [])
    return model


def _start_finetune(run: _Run, model, strategy) -> None:
    """Unfreeze the network and recompile it at the fine-tune learning rate (constant)."""
    from rescompile.train.schedule import make_optimizer, make_schedule

    recipe, finetune = run.recipe, run.recipe.finetune
    tuned = recipe.model_copy(
        update={
            "schedule": recipe.schedule.model_copy(update={"kind": "constant", "warmup_steps": 0}),
            "optimizer": recipe.optimizer.model_copy(update={"lr": finetune.lr}),
        }
    )
    with strategy.scope():
        _unfreeze(model)
        schedule = make_schedule(tuned, run.steps_per_epoch, 1)
        _compile(model, recipe, make_optimizer(tuned, schedule), run.options.jit)
    run.state.phase, run.state.phase2_start_step = 2, run.state.step
    print(
        f"fine-tuning the whole network at lr {finetune.lr:g} for {math.ceil(finetune.epochs)} epochs",
        flush=True,
    )


def _finish(run: _Run, model) -> RunSummary:
    """Test accuracy, plots, the final model (no optimizer) and its ONNX export, summary.json."""
    import keras

    from rescompile.keras_backend.model_file import model_record, save_model
    from rescompile.train.plots import plot_curves

    inputs, state = run.inputs, run.state
    started = time.perf_counter()
    exported_epoch = state.epoch
    if run.recipe.export == "best" and (run.dir / BEST_WEIGHTS).is_file():
        model.load_weights(run.dir / BEST_WEIGHTS)
        exported_epoch = state.best_epoch or state.epoch
        print(f"exporting epoch {exported_epoch}: best validation accuracy {state.best_val_accuracy:.2%}")
    scores = model.evaluate(run.one_hot(inputs.test(EVAL_BATCH)), verbose=0, return_dict=True)
    ten_crop = None
    if run.recipe.evaluation.ten_crop:
        ten_crop = inputs.ten_crop_accuracy(model)
        print(f"10-crop test accuracy: top-1 {ten_crop[0]:.2%}, top-5 {ten_crop[1]:.2%}", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    final = run.fresh_model()
    final.model.set_weights(model.get_weights())
    analysis = final.analysis  # the network trained: its classifier has the data's classes
    record = model_record(
        analysis,
        preprocess=inputs.normalization,
        class_names=inputs.class_names,
    )
    save_model(final.model, run.dir / "model.keras", record)
    if run.options.export_onnx:
        from rescompile.keras_backend.weights import weight_store
        from rescompile.onnx_backend.export import export_with_record

        export_with_record(
            weight_store(final.model, analysis.graph), analysis, run.dir / "model.onnx", record=record
        )
    if run.rows:
        plot_curves(run.rows, run.dir, f"{analysis.spec.name} on {inputs.name}, run {run.dir.name}")
    images_per_second = [row.images_per_second for row in run.rows]
    summary = RunSummary(
        spec=analysis.spec.name,
        dataset=inputs.name,
        paper_test_error=analysis.spec.expect.test_error_on(inputs.name),
        epochs=state.epoch,
        steps=state.step,
        test_accuracy=float(scores["accuracy"]),
        test_top5=float(scores["top5"]) if "top5" in scores else None,
        ten_crop=ten_crop,
        best_val_accuracy=state.best_val_accuracy,
        exported=run.recipe.export,
        exported_epoch=exported_epoch,
        wall_seconds=state.wall_seconds + (time.perf_counter() - started),
        images_per_second=float(np.median(images_per_second)) if images_per_second else None,
        params=analysis.cost.params,
        macs=analysis.cost.macs,
        precision=run.options.precision,
        distribute=run.options.distribute,
        replicas=state.replicas,
        data=state.data,
        recipe=run.recipe.name,
    )
    write_summary(run.dir, summary)
    return summary
