"""onnxruntime, an optional dependency (the `cpu` and `gpu` extras): the import that says which
extra brings it."""

from __future__ import annotations

from rescompile.errors import OnnxRuntimeMissing


def onnxruntime():
    """The onnxruntime module (from `onnxruntime` or `onnxruntime-gpu`); without either, a one-line
    error naming the extras that bring one."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxRuntimeMissing from None
    return ort
