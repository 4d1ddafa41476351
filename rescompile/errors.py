"""The project's own error types: one line for the user, never a traceback."""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` with control characters (newlines, escape sequences) and undecodable bytes escaped
    as Python writes them, so that a message naming a file stays one line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class RescompileError(Exception):
    """Base class of errors that the CLI reports as a one-line message with exit status 2."""

    exit_code = 2


class Interrupted(RescompileError):
    """Ctrl-C during long work, with what the user can do next (exit status 130, as the shell's)."""

    exit_code = 130


class SpecError(RescompileError):
    """A spec is invalid; the message names the file, line and field."""

    def __init__(self, file: str, line: int | None, field: str, message: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        self.more: list[SpecError] = []
        """Further errors found in the same file (validation reports them all at once)."""
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


def gathered(errors: list[SpecError]) -> SpecError:
    """The first of `errors` (not empty), carrying the others in `more`, to raise them together."""
    first, *first.more = errors
    return first


class OnnxRuntimeMissing(RescompileError, ImportError):
    """A command runs ONNX models, and neither onnxruntime distribution is installed: the base
    install leaves the choice to the `cpu` and `gpu` extras."""

    def __init__(self) -> None:
        super().__init__(
            "this command runs ONNX models on onnxruntime, which this install lacks:"
            " pip install 'rescompile[cpu]' (or 'rescompile[gpu]' on an NVIDIA GPU; one of the two)"
        )


class KerasMissing(RescompileError, ImportError):
    """A command needs Keras/TensorFlow, which the base install leaves out (an ImportError too,
    so code that probes for optional packages keeps working)."""

    def __init__(self) -> None:
        super().__init__(
            "this command builds or runs Keras models, and this install has no TensorFlow/Keras:"
            " pip install 'rescompile[keras]'"
        )


MAX_LISTED = 10  # names listed in one message; the rest are counted


def listing(names: list[str]) -> str:
    """'a, b, c' or 'a, ..., j and 5 more'."""
    shown = ", ".join(names[:MAX_LISTED])
    return shown if len(names) <= MAX_LISTED else f"{shown} and {len(names) - MAX_LISTED} more"
