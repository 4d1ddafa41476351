"""The run directory of `rescompile train` and the typed files in it.

    RUN_DIR/
      spec.json         the resolved spec being trained (written once; `--resume` builds from it)
      recipe.json       the recipe with every override applied (written once)
      preprocess.json   the input normalisation fitted on the training split
      metrics.csv       one row per finished epoch
      checkpoint.keras  the model and its optimizer after the last finished epoch
      best.weights.h5   the weights of the best validation epoch (recipe `export: best` only)
      state.json        RunState: where the run stands (rewritten last, after the two above)
      loss.png accuracy.png lr.png   curves
      model.keras model.onnx         the final model, each carrying its record (spec, preprocessing)
      summary.json      RunSummary: written once the run has finished

Every file is written atomically, and state.json after the checkpoint and the metrics it
describes, so a run killed at any moment resumes from an epoch whose files agree.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rescompile.errors import RescompileError
from rescompile.fileio import write_text_atomic
from rescompile.options import Precision
from rescompile.train.recipe import Recipe

SPEC = "spec.json"
STATE = "state.json"
SUMMARY = "summary.json"
RECIPE = "recipe.json"
BEST_WEIGHTS = "best.weights.h5"

Count = Annotated[int, Field(ge=0)]


class PlateauState(BaseModel):
    """ReduceLROnPlateau's memory: the best validation accuracy and the epochs since it."""

    best: float | None = None
    wait: Count = 0


class RunState(BaseModel):
    """Where a run stands after its last finished epoch, and what it trains on."""

    model_config = ConfigDict(extra="forbid")

    seed: Annotated[int, Field(ge=0, lt=2**31)]
    epoch: Count
    step: Count
    data: str | None = None
    """The data source as given to `--data` (None: keras.datasets' CIFAR download)."""
    val_data: str | None = None
    """`--val-data`, where given (image folders and TFRecords)."""
    classes: Annotated[int, Field(ge=2)] = 10
    wall_seconds: Annotated[float, Field(ge=0)] = 0.0
    replicas: Annotated[int, Field(ge=1)] = 1
    best_val_accuracy: float | None = None
    best_epoch: Count | None = None
    """The epoch of best_val_accuracy."""
    plateau: PlateauState | None = None
    phase: Literal[1, 2] = 1
    """2 once the fine-tune phase (the whole network unfrozen) has begun."""
    phase2_start_step: Count = 0
    seed_states: list[list[int]] = []
    """The model's random generators (dropout, drop-path) after the last epoch, restored on resume."""
    precision: Precision | None = None
    """The precision the run trains in (None: recorded before rescompile chose it per machine)."""


class RunSummary(BaseModel):
    """What a finished run reports: its network, data, length, accuracy and speed."""

    model_config = ConfigDict(extra="forbid")

    spec: str
    """The network's name."""
    dataset: str
    paper_test_error: float | None
    """The error the spec's source reports on this dataset (None: not published for it)."""
    epochs: Count
    steps: Count
    test_accuracy: float
    test_top5: float | None = None
    """Top-5 accuracy (None with 5 classes or fewer)."""
    ten_crop: tuple[float, float] | None = None
    """Top-1 and top-5 accuracy with 10-crop testing, where the recipe asks for it."""
    best_val_accuracy: float | None
    exported: Literal["last", "best"] = "last"
    """Which weights model.keras/model.onnx hold and test_accuracy scores: the last epoch's, or
    the best validation epoch's (the recipe's `export`)."""
    exported_epoch: Count = 0
    """The epoch those weights are from."""
    wall_seconds: float
    images_per_second: float | None
    params: Count
    macs: Count
    precision: str
    distribute: str | None
    replicas: int
    data: str | None = None
    """The data source, as recorded in the state (None: keras.datasets' CIFAR download)."""
    recipe: str
    """The recipe's name."""


def _read(path: Path, model: type[BaseModel], purpose: str):
    """A typed file of the run directory; a damaged one is a one-line error saying what to do."""
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RescompileError(f"{purpose}: {path.parent} has no {path.name}") from None
    except (ValidationError, ValueError, UnicodeDecodeError, OSError) as exc:
        if isinstance(exc, ValidationError):
            error = exc.errors(include_url=False)[0]
            where = ".".join(map(str, error["loc"]))
            exc = f"{where}: {error['msg']}" if where else error["msg"]
        raise RescompileError(f"{purpose}: {path} is damaged ({exc})") from None


def read_state(run_dir: Path) -> RunState:
    """The state of an interrupted run."""
    if not (run_dir / STATE).is_file():
        raise RescompileError(f"--resume: {run_dir} has no {STATE} (no finished epoch to resume from)")
    return _read(run_dir / STATE, RunState, "--resume")


def read_recipe(run_dir: Path) -> Recipe:
    """The recipe a run was started with."""
    return _read(run_dir / RECIPE, Recipe, "--resume")


def write_state(run_dir: Path, state: RunState) -> None:
    write_text_atomic(run_dir / STATE, state.model_dump_json(indent=2))


def read_summary(run_dir: Path) -> RunSummary:
    """The summary of a finished run."""
    if not (run_dir / SUMMARY).is_file():
        raise RescompileError(f"{run_dir}: not a finished run (no {SUMMARY})")
    return _read(run_dir / SUMMARY, RunSummary, "run")


def write_summary(run_dir: Path, summary: RunSummary) -> None:
    write_text_atomic(run_dir / SUMMARY, summary.model_dump_json(indent=2))


def write_spec(run_dir: Path, spec: dict) -> Path:
    """Record the resolved spec (JSON is YAML, so `load_spec` reads it back as it was)."""
    path = run_dir / SPEC
    write_text_atomic(path, json.dumps(spec, indent=2))
    return path


@dataclass(frozen=True)
class MetricsRow:
    """One finished epoch, a row of metrics.csv; NaN where nothing was measured (no validation
    split, top-5 with 5 classes or fewer)."""

    epoch: int
    step: int
    lr: float
    loss: float
    accuracy: float
    top5: float
    val_loss: float
    val_accuracy: float
    val_top5: float
    seconds: float
    images_per_second: float

    def cells(self) -> dict[str, str]:
        """The row as metrics.csv writes it."""
        rates = ("loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5")
        return {
            "epoch": str(self.epoch),
            "step": str(self.step),
            "lr": f"{self.lr:.6g}",
            **{key: f"{getattr(self, key):.6f}" for key in rates},
            "seconds": f"{self.seconds:.2f}",
            "images_per_second": f"{self.images_per_second:.1f}",
        }

    @classmethod
    def parse(cls, cells: dict[str, str | None]) -> MetricsRow:
        """A row of metrics.csv as read (a column it lacks is NaN)."""
        return cls(
            int(cells["epoch"]),  # type: ignore[arg-type]
            int(cells["step"]),  # type: ignore[arg-type]
            *(float(cells.get(key) or "nan") for key in METRIC_FIELDS[2:]),
        )

    def as_written(self) -> MetricsRow:
        """The values as metrics.csv holds them (rounded as written), as a resumed run reads them."""
        return MetricsRow.parse(self.cells())


METRIC_FIELDS = [field.name for field in fields(MetricsRow)]


def read_metrics(path: Path, epochs: int) -> list[MetricsRow]:
    """The first `epochs` rows of a run's metrics.csv (rows past the last checkpoint are dropped)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [MetricsRow.parse(row) for row in csv.DictReader(handle)][:epochs]


def write_metrics(path: Path, rows: list[MetricsRow]) -> None:
    """Rewrite metrics.csv atomically."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.cells() for row in rows)
    write_text_atomic(path, out.getvalue())
