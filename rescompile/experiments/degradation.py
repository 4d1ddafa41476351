"""The degradation study (He et al. 2015, Fig. 6): plain nets vs their residual twins by depth."""

from __future__ import annotations

import json
import shutil
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


def _curve(run_dir: Path) -> dict:
    rows = read_metrics(run_dir / "metrics.csv", 10**9)
    return {
        "iterations": [row.step for row in rows],
        "train_error": [1 - row.accuracy for row in rows],
        "test_error": [1 - row.val_accuracy for row in rows],
    }


def results(depths: list[int], out: Path, recipe: Recipe) -> dict:
    """results.json: the curves and final errors of every run, and whether degradation shows."""
    runs = []
    for depth in depths:
        for kind, _ in twins(depth):
            run_dir = out / f"{kind}{depth}"
            summary = read_summary(run_dir)
            curve = _curve(run_dir)
            runs.append(
                {
                    "kind": kind,
                    "depth": depth,
                    "spec": summary.spec,
                    "dataset": summary.dataset,
                    "run_dir": run_dir.name,
                    **curve,
                    "final_train_error": curve["train_error"][-1],
                    "final_test_error": 1 - summary.test_accuracy,
                }
            )
    final = {(r["kind"], r["depth"]): r["final_train_error"] for r in runs}
    shallow, deep = min(depths), max(depths)
    return {
        "experiment": "degradation",
        "recipe": recipe.model_dump(mode="json"),
        "depths": depths,
        "dataset": runs[0]["dataset"],
        "runs": runs,
        "deeper_plain_trains_worse": final[("plain", deep)] > final[("plain", shallow)],
        "deeper_resnet_trains_worse": final[("residual", deep)] > final[("residual", shallow)],
    }


def _label(run: dict) -> str:
    """A run's legend label: the paper's name for the network, then the spec's."""
    return f"{'plain' if run['kind'] == 'plain' else 'ResNet'}-{run['depth']} ({run['spec']})"


def _title(result: dict) -> str:
    """The figure's title: the data, the recipe, and the twins compared."""
    pairs = ", ".join(
        " vs ".join(run["spec"] for run in result["runs"] if run["depth"] == depth)
        for depth in result["depths"]
    )
    return (
        f"Degradation (He et al. 2015, Fig. 6) on {result['dataset']}, recipe {result['recipe']['name']}\n"
        f"{pairs}; plain dashed, ResNet solid"
    )


def _panel_curve(run: dict, colour: str):
    """A run's training and test error (%) against iterations, styled as in Fig. 6."""
    from rescompile.figures import PanelCurve

    plain = run["kind"] == "plain"
    style = {
        "color": colour,
        "linestyle": "--" if plain else "-",
        "marker": "s" if plain else "o",
        "markerfacecolor": "none" if plain else None,  # a ResNet's point shows inside its twin's
    }
    percent = [[100 * e for e in run[key]] for key in ("train_error", "test_error")]
    return PanelCurve(_label(run), run["iterations"], *percent, style)


def figure(result: dict):
    """Fig. 6 style: training and test error against iterations; plain dashed, ResNet solid, one
    colour per depth; one legend below."""
    from rescompile.figures import pyplot, two_panels

    colours = pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    curves = [
        _panel_curve(run, colours[result["depths"].index(run["depth"]) % len(colours)])
        for run in result["runs"]
    ]
    drawn, (train_axis, test_axis) = two_panels(_title(result), curves, sharey=True)
    train_axis.set(xlabel="iterations", ylabel="error (%)", title="training error")
    test_axis.set(xlabel="iterations", title="test error")
    return drawn


def plot(result: dict, path: Path) -> None:
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
) -> dict:
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
    write_text_atomic(out / "results.json", json.dumps(result, indent=2))
    plot(result, out / "degradation.png")
    return result
