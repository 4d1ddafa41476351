"""Progress of long work on stderr: a rich bar on a terminal, one line per step in a log."""

from __future__ import annotations

import sys
from types import TracebackType


class Steps:
    """`total` named steps of one piece of work (`title`); `advance(what)` starts the next one.

    On a terminal a rich progress bar shows the step being done; elsewhere (CI logs, pipes) each
    step is a line `title: what (i/total)`, so a log shows where a long command is.
    """

    def __init__(self, title: str, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.title, self.total, self.done = title, total, 0
        console = Console(stderr=True)
        self.live = console.is_terminal
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not self.live,
        )
        self.task = self.bar.add_task(title, total=total)

    def __enter__(self) -> Steps:
        self.bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.done:
            self.bar.update(self.task, completed=self.done)
        self.bar.stop()

    def advance(self, what: str) -> None:
        """Mark the previous step done and say what comes next."""
        if self.done < self.total:
            self.done += 1
        self.bar.update(self.task, completed=self.done - 1, description=f"{self.title}: {what}")
        if not self.live:
            print(f"{self.title}: {what} ({self.done}/{self.total})", file=sys.stderr, flush=True)
