"""Training callbacks: atomic per-epoch checkpoints with metrics, plateau, NaN stop, step limit."""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np

from rescompile.fileio import write_atomic
from rescompile.keras_backend.model import seed_states
from rescompile.train.run_dir import (
    BEST_WEIGHTS,
    MetricsRow,
    PlateauState,
    RunState,
    write_metrics,
    write_state,
)


class RunRecorder(keras.callbacks.Callback):
    """At the end of every epoch with a finite loss: metrics row, checkpoint, state (all atomic).

    The state file is written last, so a run killed at any moment resumes from a checkpoint whose
    state, metrics and weights agree.
    """

    def __init__(
        self,
        run_dir: Path,
        state: RunState,
        rows: list[MetricsRow],
        batch_size: int,
        steps_per_epoch: int,
        keep_best: bool = False,
    ) -> None:
        super().__init__()
        self.keep_best = keep_best
        """Also save the weights of the best validation epoch (BEST_WEIGHTS), for `export: best`."""
        self.run_dir = run_dir
        self.state = state
        self.rows = rows
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.nan_step: int | None = None
        self.started = 0.0
        self.step_offset = 0  # steps of earlier phases (a fine-tune phase restarts the optimizer)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_step = int(self.model.optimizer.iterations.numpy())
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.nan_step is not None or not math.isfinite(float(logs.get("loss", 0.0))):
            return
        seconds = time.perf_counter() - self.started
        optimizer = self.model.optimizer
        step = self.step_offset + int(optimizer.iterations.numpy())
        lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        measured = (
            float(logs.get(key, float("nan")))
            for key in ("loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5")
        )
        row = MetricsRow(
            epoch + 1, step, lr, *measured, seconds, self.steps_per_epoch * self.batch_size / seconds
        ).as_written()
        self.rows.append(row)
        write_metrics(self.run_dir / "metrics.csv", self.rows)
        write_atomic(self.run_dir / "checkpoint.keras", self.model.save, suffix=".keras")
        val = float(logs.get("val_accuracy", float("nan")))
        best = self.state.best_val_accuracy
        if math.isfinite(val) and (best is None or val > best):
            self.state.best_val_accuracy, self.state.best_epoch = val, epoch + 1
            if self.keep_best:
                write_atomic(self.run_dir / BEST_WEIGHTS, self.model.save_weights, suffix=BEST_WEIGHTS)
        self.state.epoch, self.state.step = epoch + 1, step
        self.state.wall_seconds += seconds
        self.state.seed_states = seed_states(self.model)
        write_state(self.run_dir, self.state)
        print(
            f"epoch {epoch + 1}: lr {lr:.4g}, {row.images_per_second:.1f} img/s, checkpoint saved", flush=True
        )


class Plateau(keras.callbacks.Callback):
    """ReduceLROnPlateau on val_accuracy, acting on the schedule's `scale` (its memory is part of
    the run's state, so a resumed run keeps counting)."""

    def __init__(self, schedule, memory: PlateauState, factor: float, patience: int, min_lr: float) -> None:
        super().__init__()
        self.schedule = schedule
        self.memory = memory
        self.factor, self.patience, self.min_lr = factor, patience, min_lr

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get("val_accuracy")
        if value is None:
            return
        if self.memory.best is None or value > self.memory.best:
            self.memory.best, self.memory.wait = float(value), 0
            return
        self.memory.wait += 1
        if self.memory.wait >= self.patience:
            unscaled = float(
                keras.ops.convert_to_numpy(self.schedule(self.model.optimizer.iterations))
            ) / float(self.schedule.scale.numpy())
            scale = max(float(self.schedule.scale.numpy()) * self.factor, self.min_lr / max(unscaled, 1e-12))
            self.schedule.scale.assign(np.float32(min(scale, float(self.schedule.scale.numpy()))))
            self.memory.wait = 0


class StopAtStep(keras.callbacks.Callback):
    """Stop when the optimizer has taken `steps` steps (the paper stops at 64k iterations)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if int(self.model.optimizer.iterations.numpy()) >= self.steps:
            self.model.stop_training = True
