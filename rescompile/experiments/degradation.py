"""The degradation study (He et al. 2015, Fig. 6): plain nets vs their residual twins by depth."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from rescompile.errors import RescompileError
from rescompile.fileio import write_text_atomic
from rescompile.progress import Steps
from rescompile.spec.library import library_dir
from rescompile.train.recipe import Recipe, recipe_differences
from rescompile.train.run_dir import STATE, SUMMARY, read_metrics, read_recipe, read_state, read_summary

DEPTHS = (20, 32, 44, 56)


def twins(depth: int) -> list[tuple[str, Path]]:
    """(kind, spec) of the plain net and the ResNet of one depth."""
    if depth not in DEPTHS:
        raise RescompileError(f"--depths: plain nets exist for {', '.join(map(str, DEPTHS))}, not {depth}")
    library = library_dir()
    return [
        ("plain", library / f"plain/plain{depth}.yaml"),
        ("residual", library / f"cifar/resnet{depth}.yaml"),
    ]


def _same_settings(run_dir: Path, data: str | None, recipe: Recipe, seed: int, precision: str) -> None:
    """Refuse to reuse a run made with another recipe, data, seed or (asked for) precision."""
    from rescompile.train.trainer import recorded_data

    state, stored = read_state(run_dir), read_recipe(run_dir)
    changed = recipe_differences(recipe, stored)
    if state.data != recorded_data(data):
        changed.append(f"data ({state.data or 'keras.datasets CIFAR'})")
    if state.seed != seed:
        changed.append(f"seed ({state.seed})")
    if precision != "auto" and precision != (state.precision or "float32"):
        changed.append(f"precision ({state.precision or 'float32'})")
    if changed:
        raise RescompileError(
            f"{run_dir} was trained with other settings ({', '.join(changed)}): pass --force to retrain,"
            " or another --out"
        )


def _train_or_reuse(
    spec: Path, run_dir: Path, data: str | None, recipe: Recipe, seed: int, precision: str, force: bool
) -> None:
    """Train into run_dir; a run with the same settings is reused (resumed if interrupted)."""
    from rescompile.train.scaling import FITTED
    from rescompile.train.trainer import TrainOptions, train

    started = (run_dir / STATE).exists()
    if started and force:
        shutil.rmtree(run_dir)
        started = False
    if started:
        _same_settings(run_dir, data, recipe, seed, precision)
        if (run_dir / SUMMARY).exists():
            return
    options = TrainOptions(  # every twin trains with the recipe exactly as given (no small-data fitting)
        spec=spec,
        data=data,
        out=run_dir,
        seed=seed,
        precision=precision,
        resume=started,
        export_onnx=False,
        given=FITTED,
    )
    train(options, recipe)


@dataclass(frozen=True)
class TwinRun:
    """One network of the study: its curves (errors as fractions) and final errors."""

    kind: str  # "plain" or "residual"
    depth: int
    spec: str
    dataset: str
    run_dir: str
    iterations: list[int]
    train_error: list[float]
    test_error: list[float]
    final_train_error: float
    final_test_error: float

    @property
    def label(self) -> str:
        """The legend label: the paper's name for the network, then the spec's."""
        return f"{'plain' if self.kind == 'plain' else 'ResNet'}-{self.depth} ({self.spec})"


@dataclass(frozen=True)
class Degradation:
    """The study's result (results.json): every twin's run, and whether degradation shows."""

    recipe: Recipe
    depths: list[int]
    runs: list[TwinRun]

    @property
    def dataset(self) -> str:
        return self.runs[0].dataset

    def _deeper_trains_worse(self, kind: str) -> bool:
        final = {run.depth: run.final_train_error for run in self.runs if run.kind == kind}
        return final[max(self.depths)] > final[min(self.depths)]

    @property
    def deeper_plain_trains_worse(self) -> bool:
        return self._deeper_trains_worse("plain")

    @property
    def deeper_resnet_trains_worse(self) -> bool:
        return self._deeper_trains_worse("residual")

    def as_json(self) -> str:
        """results.json."""
        return json.dumps(
            {
                "experiment": "degradation",
                "recipe": self.recipe.model_dump(mode="json"),
                "depths": self.depths,
                "dataset": self.dataset,
                "runs": [asdict(run) for run in self.runs],
                "deeper_plain_trains_worse": self.deeper_plain_trains_worse,
                "deeper_resnet_trains_worse": self.deeper_resnet_trains_worse,
            },
            indent=2,
        )


def _twin_run(run_dir: Path, kind: str, depth: int) -> TwinRun:
    """A finished run of the study, read from its directory."""
    summary = read_summary(run_dir)
    rows = read_metrics(run_dir / "metrics.csv", 10**9)
    train_error = [1 - row.accuracy for row in rows]
    return TwinRun(
        kind,
        depth,
        summary.spec,
        summary.dataset,
        run_dir.name,
        iterations=[row.step for row in rows],
        train_error=train_error,
        test_error=[1 - row.val_accuracy for row in rows],
        final_train_error=train_error[-1],
        final_test_error=1 - summary.test_accuracy,
    )


def results(depths: list[int], out: Path, recipe: Recipe) -> Degradation:
    """The curves and final errors of every run."""
    runs = [_twin_run(out / f"{kind}{depth}", kind, depth) for depth in depths for kind, _ in twins(depth)]
    return Degradation(recipe, depths, runs)


def _title(result: Degradation) -> str:
    """The figure's title: the data, the recipe, and the twins compared."""
    pairs = ", ".join(
        " vs ".join(run.spec for run in result.runs if run.depth == depth) for depth in result.depths
    )
    return (
        f"Degradation (He et al. 2015, Fig. 6) on {result.dataset}, recipe {result.recipe.name}\n"
        f"{pairs}; plain dashed, ResNet solid"
    )


def _panel_curve(run: TwinRun, colour: str):
    """A run's training and test error (%) against iterations, styled as in Fig. 6."""
    from rescompile.figures import PanelCurve

    plain = run.kind == "plain"
    style = {
        "color": colour,
        "linestyle": "--" if plain else "-",
        "marker": "s" if plain else "o",
        "markerfacecolor": "none" if plain else None,  # a ResNet's point shows inside its twin's
    }
    percent = [[100 * e for e in errors] for errors in (run.train_error, run.test_error)]
    return PanelCurve(run.label, run.iterations, *percent, style)


def figure(result: Degradation):
    """Fig. 6 style: training and test error against iterations; plain dashed, ResNet solid, one
    colour per depth; one legend below."""
    from rescompile.figures import pyplot, two_panels

    colours = pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    curves = [
        _panel_curve(run, colours[result.depths.index(run.depth) % len(colours)]) for run in result.runs
    ]
    drawn, (train_axis, test_axis) = two_panels(_title(result), curves, sharey=True)
    train_axis.set(xlabel="iterations", ylabel="error (%)", title="training error")
    test_axis.set(xlabel="iterations", title="test error")
    return drawn


def plot(result: Degradation, path: Path) -> None:
    """Write figure(result) to `path`."""
    from rescompile.figures import write_figure

    write_figure(figure(result), path)


def run(
    depths: list[int],
    *,
    data: str | None,
    recipe: Recipe,
    out: Path,
    seed: int = 0,
    precision: str = "auto",
    force: bool = False,
) -> Degradation:
    """Train every twin with the same recipe (test-set curves, as the paper plots), then report."""
    if len(set(depths)) < 2:
        raise RescompileError(
            f"--depths {','.join(map(str, depths))}: the study compares a shallower and a deeper pair"
            " of twins; give two depths or more, e.g. --depths 20,56"
        )
    recipe = recipe.model_copy(update={"validation": 0})
    networks = [(kind, depth, spec) for depth in depths for kind, spec in twins(depth)]
    with Steps("degradation experiment", len(networks)) as steps:
        for kind, depth, spec in networks:
            steps.advance(
                f"{kind}-{depth} ({spec.relative_to(library_dir()).as_posix()}) into {out / f'{kind}{depth}'}"
            )
            _train_or_reuse(spec, out / f"{kind}{depth}", data, recipe, seed, precision, force)
    result = results(depths, out, recipe)
    write_text_atomic(out / "results.json", result.as_json())
    plot(result, out / "degradation.png")
    return result
