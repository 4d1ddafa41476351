"""Keras code generation: IR -> jinja2 template -> a standalone, readable Python module."""

from __future__ import annotations

import math

import jinja2

from rescompile.analysis.tables import environment
from rescompile.errors import RescompileError


class Code(str):
    """Python source that the generator itself wrote: the only text printed into a module as is."""


def escape_text(text: str) -> str:
    """`text` for the inside of a double-quoted (or triple-quoted) Python string literal.

    Printable characters stay as they are (readable); quotes and backslashes are escaped, and
    everything else (newlines, NUL, lone surrogates) becomes an escape sequence, so no text can
    end the literal or make the module unparsable.
    """
    return "".join(
        "\\" + char if char in '"\\' else char if char.isprintable() else repr(char)[1:-1] for char in text
    )


def py_literal(value: object) -> str:
    """A Python literal (double-quoted strings, as ruff formats them) of validated data only.

    Accepts None, booleans, integers, finite floats, strings, and tuples/lists of them; anything
    else is refused, so no object's own `repr` can reach generated code.
    """
    if isinstance(value, Code):
        return value
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RescompileError(f"cannot write the non-finite number {value} into generated code")
        return repr(value)
    if isinstance(value, str):
        return '"' + escape_text(value) + '"'
    if isinstance(value, tuple):
        return "(" + ", ".join(map(py_literal, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(map(py_literal, value)) + "]"
    raise TypeError(f"internal: {type(value).__name__} has no safe Python literal")


def doc_text(value: object) -> Code:
    """Free text for a docstring: escaped so it cannot end the docstring."""
    return Code(escape_text(str(value)))


def code_environment() -> jinja2.Environment:
    """The code templates' environment: every `{{ expression }}` prints as a Python literal
    (escape by default), except text the generator marked as `Code`; `| doc` escapes free text
    for docstrings."""
    env = environment(code=True)
    env.finalize = py_literal
    env.filters["doc"] = doc_text
    return env
