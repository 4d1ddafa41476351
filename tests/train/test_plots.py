"""Every figure reads on its own: titled with the network and the data, integer ticks on counting
axes, log scale for loss, legends outside the data, markers on single points, a labelled confusion
matrix with a colour bar and readable counts. Drawn from small synthetic inputs, no training."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.ticker import MaxNLocator
from PIL import Image

from rescompile.experiments import degradation
from rescompile.experiments.gradients import GradientProfile, in_words, plot_profiles, profiles_figure
from rescompile.figures import pyplot
from rescompile.inputs.scoring import (
    NAME_CHARS,
    confusion_figure,
    confusion_matrix,
    confusion_summary,
    plot_confusion,
)
from rescompile.serve.evaluate import confusion_text
from rescompile.train.plots import curve_figure, plot_curves
from rescompile.train.run_dir import MetricsRow

TITLE = "cifar_resnet20 on cifar10"
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    pyplot().close("all")


def metric_rows(epochs: int, validation: bool = True, lr: float = 0.1) -> list[MetricsRow]:
    """metrics.csv rows as read back: loss falling over a decade, lr stepped down."""
    rows = []
    for epoch in range(1, epochs + 1):
        loss = 2.3 * (1 - lr) * 0.6**epoch
        cells = {
            "epoch": str(epoch),
            "step": str(390 * epoch),
            "lr": str(0.1 if epoch < 4 else 0.01),
            "loss": f"{loss:.6f}",
            "accuracy": f"{1 - loss / 2.5:.6f}",
            "val_loss": f"{1.1 * loss:.6f}" if validation else "nan",
            "val_accuracy": f"{1 - 1.1 * loss / 2.5:.6f}" if validation else "nan",
            "seconds": "10.0",
            "images_per_second": "5000.0",
        }
        rows.append(MetricsRow.parse(cells))
    return rows


def assert_readable(figure, *names: str) -> None:
    """The title names everything in `names`; titles, legends and axes do not overlap; legends lie
    outside every axes and inside the figure; counting x axes tick only whole numbers."""
    title = figure.get_suptitle()
    assert all(name in title for name in names), (title, names)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    plots = [axis for axis in figure.axes if axis.get_label() != "<colorbar>"]
    title_box = figure._suptitle.get_window_extent(renderer)
    assert all(title_box.y0 >= axis.get_tightbbox(renderer).y1 - 1 for axis in plots), "title overlaps"
    for legend in figure.legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(axis.get_tightbbox(renderer)) for axis in figure.axes)
        assert not box.overlaps(title_box)
        assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1, "legend cut off"
    for axis in plots:
        if axis.get_xlabel() in ("epoch", "iterations") or axis.get_xlabel().startswith("weighted layer"):
            assert isinstance(axis.xaxis.get_major_locator(), MaxNLocator)
            assert all(float(tick).is_integer() for tick in axis.get_xticks()), axis.get_xticks()


def assert_points_marked(figure) -> None:
    """Every line with a single point has a visible marker."""
    single = [line for axis in figure.axes for line in axis.lines if len(line.get_xdata()) == 1]
    assert single
    assert all(line.get_marker() not in (None, "None", "", " ") for line in single)


def assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


@pytest.mark.parametrize("epochs", [1, 8])
def test_run_curves_are_titled_with_integer_epochs_and_log_loss(tmp_path: Path, epochs: int) -> None:
    rows = metric_rows(epochs)
    loss = curve_figure(rows, TITLE, "loss")
    assert_readable(loss, "cifar_resnet20", "cifar10")
    axis = loss.axes[0]
    assert axis.get_yscale() == "log" and axis.get_xlabel() == "epoch"
    assert [text.get_text() for text in loss.legends[0].get_texts()] == ["train", "validation"]
    assert curve_figure(rows, TITLE, "lr").axes[0].get_yscale() == "log"
    accuracy = curve_figure(rows, TITLE, "accuracy")
    assert_readable(accuracy, TITLE)
    assert accuracy.axes[0].get_yscale() == "linear"
    if epochs == 1:
        assert_points_marked(loss)
    run_dir = tmp_path / f"run{epochs}"
    written = plot_curves(rows, run_dir, TITLE)
    assert [path.name for path in written] == ["loss.png", "accuracy.png", "lr.png"]
    for path in written:
        assert_png(path)


def test_run_curves_without_validation_leave_out_the_empty_curve(tmp_path: Path) -> None:
    figure = curve_figure(metric_rows(3, validation=False), TITLE, "loss")
    assert [line.get_label() for line in figure.axes[0].lines] == ["train"]
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["train"]
    assert not curve_figure(metric_rows(3), TITLE, "lr").legends  # the y label says what it is
    plot_curves(metric_rows(3, validation=False), tmp_path / "untitled_run")
    assert_png(tmp_path / "untitled_run" / "loss.png")


def test_an_accuracy_of_100_percent_tops_the_axis_at_100_percent() -> None:
    rows = metric_rows(1)
    rows[0] = dataclasses.replace(rows[0], accuracy=1.0, val_accuracy=1.0)
    axis = curve_figure(rows, TITLE, "accuracy").axes[0]
    bottom, top = axis.get_ylim()
    assert top == 1.0 and 0 <= bottom < 1
    assert not any(line.get_clip_on() for line in axis.lines)  # the point on the frame shows whole


def test_a_schedule_ending_at_zero_is_drawn_on_a_linear_axis() -> None:
    rows = metric_rows(3)
    rows[-1] = dataclasses.replace(
        rows[-1], lr=0.0
    )  # one-cycle's last epoch: log(0) would drop the point off the chart
    axis = curve_figure(rows, TITLE, "lr").axes[0]
    assert axis.get_yscale() == "linear" and axis.get_ylabel() == "learning rate"
    assert curve_figure(metric_rows(3), TITLE, "lr").axes[0].get_ylabel() == "learning rate (log scale)"


def confusion_counts(classes: int) -> np.ndarray:
    """A confusion matrix of a decent classifier: 1000 test images per class."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(classes), 1000)
    wrong = rng.random(len(labels)) < 0.2
    predicted = np.where(wrong, rng.integers(0, classes, len(labels)), labels)
    return confusion_matrix(labels, predicted, classes)


def test_confusion_matrix_has_labelled_axes_a_colour_bar_and_readable_counts(tmp_path: Path) -> None:
    matrix = confusion_counts(10)
    figure = confusion_figure(matrix, CIFAR10, f"{TITLE}, test split")
    assert_readable(figure, "cifar_resnet20", "cifar10")
    axis = figure.axes[0]
    assert axis.get_xlabel() == "predicted" and axis.get_ylabel() == "true"
    assert axis.images[0].colorbar is not None
    assert [label.get_text() for label in axis.get_xticklabels()] == CIFAR10
    counts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in axis.texts}
    assert len(counts) == 100 and counts[(3, 3)].get_text() == str(matrix[3, 3])
    assert counts[(3, 3)].get_color() == "white" and counts[(3, 5)].get_color() == "black"
    plot_confusion(matrix, CIFAR10, tmp_path / "confusion.png", f"{TITLE}, test split")
    assert_png(tmp_path / "confusion.png")


@pytest.mark.parametrize("classes", [100, 1000])
def test_a_large_confusion_matrix_names_every_kth_class_readably(tmp_path: Path, classes: int) -> None:
    names = [f"n{i:08d} a long class name, as ImageNet's are" for i in range(classes)]
    matrix = np.random.default_rng(0).integers(0, 3, (classes, classes)) + 40 * np.eye(classes, dtype=int)
    title = f"resnet50 on {classes} classes"
    figure = confusion_figure(matrix, names, title)
    assert_readable(figure, title)
    axis = figure.axes[0]
    assert not axis.texts and max(figure.get_size_inches()) <= 18
    step = classes // 50
    assert list(axis.get_xticks()) == list(range(0, classes, step)) == list(axis.get_yticks())
    labels = axis.get_yticklabels()
    assert labels[1].get_text() == f"{step} {names[step]}"[: NAME_CHARS - 1] + "…"  # index, shortened name
    assert all(len(label.get_text()) <= NAME_CHARS and label.get_fontsize() >= 8 for label in labels)
    assert axis.get_xlabel() == f"predicted (1 class in {step} named, of {classes})"
    boxes = [label.get_window_extent() for label in labels]
    assert not any(box.overlaps(above) for box, above in itertools.pairwise(boxes)), "labels overlap"
    plot_confusion(matrix, names, tmp_path / f"confusion{classes}.png", title)
    assert_png(tmp_path / f"confusion{classes}.png")


def test_printed_confusion_matrix_labels_true_rows_and_predicted_columns() -> None:
    matrix = np.array([[950, 3, 47], [12, 1000, 0], [5, 6, 7]])
    lines = confusion_text(["cat", "automobile", "dog"], matrix).splitlines()
    assert lines[0].split() == ["true", "\\", "predicted", "cat", "automobile", "dog"]
    assert lines[1].split() == ["cat", "950", "3", "47"] and lines[2].split()[0] == "automobile"
    assert len({len(line) for line in lines}) == 1  # columns aligned
    assert lines[0].index("automobile") + len("automobile") == lines[2].index("1000") + len("1000")


@pytest.mark.parametrize("classes", [100, 1000])
def test_a_large_printed_confusion_matrix_is_summarised(classes: int) -> None:
    names = [f"class{i}" for i in range(classes)]
    matrix = 90 * np.eye(classes, dtype=int) + 10 * np.roll(np.eye(classes, dtype=int), 1, axis=1)
    matrix[7] = matrix[9] = 0
    matrix[7, 7], matrix[7, 3] = 40, 60  # class7: 40 of 100 right, 60 taken for class3
    matrix[9, 9], matrix[9, 0] = 80, 20
    lines = confusion_summary(matrix, names).splitlines()
    assert len(lines) == 23 and max(map(len, lines)) < 100
    assert (
        lines[0] == f"{classes} classes, too many to print in full:"
        f" accuracy {(90 * classes - 60) / (100 * classes):.2%} on {100 * classes} images"
    )
    assert lines[1].startswith("least accurate classes")
    assert lines[2].split() == ["class7", "40.00%", "40", "of", "100"] and lines[3].split()[0] == "class9"
    assert lines[12] == "most frequent confusions (true → predicted: images, of the true class's):"
    assert lines[13:16] == [
        "  class7 → class3: 60 of 100",
        "  class9 → class0: 20 of 100",
        "  class0 → class1: 10 of 100",
    ]


def test_a_summary_without_confusions_says_so() -> None:
    assert confusion_summary(np.diag([5] * 30), [str(i) for i in range(30)]).endswith("class's):\n  none")


def degradation_result(points: int) -> degradation.Degradation:
    """A degradation study at depths 20 and 56, `points` epochs per run."""
    from rescompile.train.recipe import load_recipe

    runs = []
    for depth in (20, 56):
        for kind, name, scale in (("plain", "plain", 1.0), ("residual", "resnet", 0.8)):
            error = [scale * (0.85 * 0.7**i + depth / 1000) for i in range(points)]
            runs.append(
                degradation.TwinRun(
                    kind, depth, f"cifar_{name}{depth}", "cifar10", f"{kind}{depth}",
                    iterations=[391 * (i + 1) for i in range(points)], train_error=error,
                    test_error=[e + 0.05 for e in error], final_train_error=error[-1],
                    final_test_error=error[-1] + 0.05,
                )
            )  # fmt: skip
    return degradation.Degradation(load_recipe("fast"), [20, 56], runs)


@pytest.mark.parametrize("points", [1, 12])
def test_degradation_figure_names_data_and_twins(tmp_path: Path, points: int) -> None:
    figure = degradation.figure(degradation_result(points))
    assert_readable(figure, "cifar10", "cifar_plain20", "cifar_resnet56", "recipe fast")
    train_axis, test_axis = figure.axes
    assert test_axis.get_title() == "test error" and test_axis.get_shared_y_axes().joined(
        train_axis, test_axis
    )
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels[:2] == ["plain-20 (cifar_plain20)", "ResNet-20 (cifar_resnet20)"]
    assert train_axis.get_xlabel() == "iterations" and train_axis.get_ylabel() == "error (%)"
    if points == 1:
        assert_points_marked(figure)
    degradation.plot(degradation_result(points), tmp_path / f"degradation{points}.png")
    assert_png(tmp_path / f"degradation{points}.png")


def gradient_profiles() -> list[GradientProfile]:
    """A residual net as written and a plain one without BatchNorm whose signal vanishes."""
    layers = [f"conv{i}" for i in range(19)] + ["predictions"]
    batch = "one batch of 32 random N(0, 1) images of 32×32×3 with random labels (seed 0)"
    return [
        GradientProfile(
            "cifar_resnet20", layers, [0.1] * 20, [0.5 + 0.01 * i for i in range(20)],
            "cifar_resnet20", in_words(None), batch,
        ),
        GradientProfile(
            "cifar_plain20_batchnorm_false_initializer_glorot_uniform", layers,
            [10.0 ** (-i / 2) for i in range(20, 0, -1)], [10.0 ** (-i / 2) for i in range(20, 0, -1)],
            "cifar_plain20", in_words({"batchnorm": False, "initializer": "glorot_uniform"}), batch,
        ),
    ]  # fmt: skip


def test_gradient_figure_has_readable_legends_log_norms_and_integer_depths(tmp_path: Path) -> None:
    figure = profiles_figure(gradient_profiles())
    assert_readable(figure, "cifar_resnet20", "cifar_plain20", "random N(0, 1) images")
    assert all(axis.get_yscale() == "log" for axis in figure.axes)
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == ["cifar_resnet20 (as written)", "cifar_plain20 (BatchNorm off, glorot_uniform init)"]
    assert all(line.get_marker() not in (None, "None") for axis in figure.axes for line in axis.lines)
    plot_profiles(gradient_profiles(), tmp_path / "gradients.png")
    assert_png(tmp_path / "gradients.png")


def report_run(path: Path, lr: float, epochs: int):
    """A finished run directory (summary, recipe, metrics) trained with `lr` for `epochs`."""
    from rescompile.experiments.report import load_run
    from rescompile.train.recipe import load_recipe
    from rescompile.train.run_dir import RECIPE, RunSummary, write_metrics, write_summary

    path.mkdir()
    recipe = load_recipe("fast", [f"optimizer.lr={lr}", f"epochs={epochs}"])
    (path / RECIPE).write_text(recipe.model_dump_json())
    summary = RunSummary(
        spec="cifar_resnet20", dataset="cifar10", paper_test_error=8.75, epochs=epochs, steps=390 * epochs,
        test_accuracy=0.9, best_val_accuracy=0.9, wall_seconds=60.0, images_per_second=5000.0,
        params=272_474, macs=40_551_232, precision="float32", distribute=None, replicas=1, recipe="fast",
    )  # fmt: skip
    write_summary(path, summary)
    write_metrics(path / "metrics.csv", metric_rows(epochs, lr=lr))
    return load_run(path)


def test_report_figure_labels_runs_by_spec_and_the_setting_that_differs(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    from rescompile.experiments.report import plot_runs, run_labels, runs_figure

    runs = [report_run(tmp_path / "lr_high", 0.4, 1), report_run(tmp_path / "lr_low", 0.1, 6)]
    assert run_labels(runs) == ["cifar_resnet20 (epochs 1, lr 0.4)", "cifar_resnet20 (epochs 6, lr 0.1)"]
    assert run_labels([runs[1], runs[1]]) == ["cifar_resnet20 [lr_low]"] * 2
    runs[0].rows[0] = dataclasses.replace(runs[0].rows[0], val_accuracy=1.0)  # a single point at 100%
    figure = runs_figure(runs)
    assert_readable(figure, "cifar_resnet20", "cifar10", "lr_high", "lr_low")
    assert [text.get_text() for text in figure.legends[0].get_texts()] == run_labels(runs)
    loss_axis, accuracy_axis = figure.axes
    assert loss_axis.get_yscale() == "log" and loss_axis.get_xlabel() == "iterations"
    assert_points_marked(figure)
    assert not any(math.isnan(y) for line in accuracy_axis.lines for y in line.get_ydata())
    assert accuracy_axis.get_ylim()[1] == 1.0, "the accuracy axis runs past 100%"
    plot_runs(runs, tmp_path / "curves.png")
    assert_png(tmp_path / "curves.png")


def test_settings_are_named_in_words_in_legends() -> None:
    from rescompile.experiments.report import setting_label

    assert setting_label("optimizer.lr", "0.4") == "lr 0.4"
    assert setting_label("batch_size", "128") == "batch 128"
    assert setting_label("optimizer.weight_decay", "0.0001") == "weight decay 0.0001"
    assert setting_label("augment.flip", "True") == "augment.flip True"  # no words for it: its key
