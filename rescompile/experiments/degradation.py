"""The degradation study (He et al. 2015, Fig. 6): plain nets vs their residual twins by depth."""

from __future__ import annotations

import json
from pathlib import Path

from rescompile.errors import RescompileError
from rescompile.fileio import write_text_atomic
from rescompile.train.callbacks import read_metrics
from rescompile.train.recipe import Recipe

DEPTHS = (20, 32, 44, 56)


def twins(depth: int) -> list[tuple[str, Path]]:
    """(kind, spec) of the plain net and the ResNet of one depth."""
    if depth not in DEPTHS:
        raise RescompileError(f"--depths: plain nets exist for {', '.join(map(str, DEPTHS))}, not {depth}")
    return [
        ("plain", Path(f"specs/plain/plain{depth}.yaml")),
        ("residual", Path(f"specs/cifar/resnet{depth}.yaml")),
    ]


def _train_or_reuse(spec: Path, run_dir: Path, data: str | None, recipe: Recipe, seed: int) -> None:
    """Train into run_dir; a finished run is reused and an interrupted one resumed."""
    from rescompile.train.trainer import TrainOptions, train

    if (run_dir / "summary.json").exists():
        return
    resume = (run_dir / "state.json").exists()
    train(TrainOptions(spec, data, run_dir, seed=seed, resume=resume, export_onnx=False), recipe)


def _curve(run_dir: Path) -> dict:
    rows = read_metrics(run_dir / "metrics.csv", 10**9)
    return {
        "iterations": [int(r["step"]) for r in rows],
        "train_error": [1 - float(r["accuracy"]) for r in rows],
        "test_error": [1 - float(r["val_accuracy"]) for r in rows],
    }


def results(depths: list[int], out: Path, recipe: Recipe) -> dict:
    """results.json: the curves and final errors of every run, and whether degradation shows."""
    runs = []
    for depth in depths:
        for kind, spec in twins(depth):
            run_dir = out / f"{kind}{depth}"
            summary = json.loads((run_dir / "summary.json").read_text())
            curve = _curve(run_dir)
            runs.append(
                {
                    "kind": kind,
                    "depth": depth,
                    "spec": str(spec),
                    "run_dir": run_dir.name,
                    **curve,
                    "final_train_error": curve["train_error"][-1],
                    "final_test_error": 1 - summary["test_accuracy"],
                }
            )
    final = {(r["kind"], r["depth"]): r["final_train_error"] for r in runs}
    shallow, deep = min(depths), max(depths)
    return {
        "experiment": "degradation",
        "recipe": recipe.model_dump(mode="json"),
        "depths": depths,
        "runs": runs,
        "deeper_plain_trains_worse": final[("plain", deep)] > final[("plain", shallow)],
        "deeper_resnet_trains_worse": final[("residual", deep)] > final[("residual", shallow)],
    }


def plot(result: dict, path: Path) -> None:
    """Fig. 6 style: training and test error against iterations; plain dashed, ResNet solid."""
    from rescompile.train.plots import pyplot, save_png

    plt = pyplot()

    figure, (train_axis, test_axis) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for run in result["runs"]:
        colour = colours[result["depths"].index(run["depth"]) % len(colours)]
        style = "--" if run["kind"] == "plain" else "-"
        label = f"{'plain' if run['kind'] == 'plain' else 'ResNet'}-{run['depth']}"
        train_axis.plot(
            run["iterations"], [100 * e for e in run["train_error"]], style, color=colour, label=label
        )
        test_axis.plot(
            run["iterations"], [100 * e for e in run["test_error"]], style, color=colour, label=label
        )
    train_axis.set(xlabel="iterations", ylabel="error (%)", title="training error")
    test_axis.set(xlabel="iterations", title="test error")
    for axis in (train_axis, test_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    save_png(figure, path)
    plt.close(figure)


def run(depths: list[int], data: str | None, recipe: Recipe, out: Path, seed: int = 0) -> dict:
    """Train every twin with the same recipe (test-set curves, as the paper plots), then report."""
    recipe = recipe.model_copy(update={"validation": 0})
    for depth in depths:
        for kind, spec in twins(depth):
            _train_or_reuse(spec, out / f"{kind}{depth}", data, recipe, seed)
    result = results(depths, out, recipe)
    write_text_atomic(out / "results.json", json.dumps(result, indent=2))
    plot(result, out / "degradation.png")
    return result
