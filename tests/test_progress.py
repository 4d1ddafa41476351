"""Progress bars: drawn on a terminal, silent in logs and pipes (where errors stay one line)."""

from __future__ import annotations

import io

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
