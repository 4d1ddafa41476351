"""Progress of long work: a rich bar on stderr when it is a terminal (logs and pipes stay clean,
so an error is still the one line a script reads)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


class Steps:
    """`total` named steps of one piece of work (`title`); `advance(what)` starts the next one.
    On a terminal a rich progress bar shows the step being done and the time spent."""

    def __init__(self, title: str, total: int, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.title, self.total, self.done = escape(title), total, 0  # file names are not markup
        console = console or Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.task = self.bar.add_task(self.title, total=total)

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
        from rich.markup import escape

        self.bar.update(self.task, completed=self.done - 1, description=f"{self.title}: {escape(what)}")
