"""Progress bars: drawn on a terminal, silent in logs and pipes (where errors stay one line)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from rescompile.progress import Steps


def test_a_terminal_sees_each_step_named_and_counted() -> None:
    screen = io.StringIO()
    with Steps("export x.keras", 2, Console(file=screen, force_terminal=True, width=100)) as steps:
        steps.advance("building the Keras model")
        steps.bar.refresh()
        steps.advance("emitting 57 IR nodes as ONNX")
        steps.bar.refresh()
    text = screen.getvalue()
    assert "export x.keras: building the Keras model" in text and "0/2" in text
    assert "export x.keras: emitting 57 IR nodes as ONNX" in text and "1/2" in text
    assert steps.done == 2


def test_a_log_gets_nothing() -> None:
    log = io.StringIO()
    with Steps("bench m.onnx", 3, Console(file=log, force_terminal=False)) as steps:
        for size in (1, 8, 32):
            steps.advance(f"batch size {size}")
    assert log.getvalue() == ""


def test_file_names_are_shown_as_written_not_read_as_markup() -> None:
    screen = io.StringIO()
    with Steps(
        "export [bold]x[/bold].keras", 1, Console(file=screen, force_terminal=True, width=100)
    ) as steps:
        steps.advance("loading [link=file:///etc/passwd]m[/link]")
        steps.bar.refresh()
    text = screen.getvalue()
    assert "export [bold]x[/bold].keras: loading [link=file:///etc/passwd]m[/link]" in text


def test_the_gradients_experiment_names_each_network_it_profiles(monkeypatch, tmp_path: Path) -> None:
    from rescompile import progress
    from rescompile.experiments import gradients
    from rescompile.spec import load_spec

    screen = io.StringIO()

    class OnScreen(Steps):
        def __init__(self, title: str, total: int) -> None:
            super().__init__(title, total, Console(file=screen, force_terminal=True, width=120))

        def advance(self, what: str) -> None:
            super().advance(what)
            self.bar.refresh()

    def profile(analysis, *, network: str, setting: str, batch: int = 0) -> gradients.GradientProfile:
        layers = ["conv1", "predictions"]
        return gradients.GradientProfile(network, layers, [1.0, 0.5], [1.0, 0.5], network, setting, "a batch")

    monkeypatch.setattr(progress, "Steps", OnScreen)
    monkeypatch.setattr(gradients, "gradient_profile", profile)
    specs = [load_spec("specs/cifar/resnet20.yaml")]
    gradients.run(specs, [load_spec("specs/plain/plain20.yaml")], tmp_path, initializer="glorot_uniform")
    text = screen.getvalue()
    assert "gradients experiment: cifar_resnet20 (as written)" in text and "0/2" in text
    assert (
        "gradients experiment: cifar_plain20 (BatchNorm off, glorot_uniform init)" in text and "1/2" in text
    )
