"""The project's own error types: one line for the user, never a traceback."""

from __future__ import annotations


class RescompileError(Exception):
    """Base class of errors that the CLI reports as a one-line message with exit status 2."""


class SpecError(RescompileError):
    """A spec is invalid; the message names the file, line and field."""

    def __init__(self, file: str, line: int | None, field: str, message: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")
