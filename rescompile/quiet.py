"""Import TensorFlow/Keras without the C++ start-up chatter (absl INFO lines) on stderr."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys

from rescompile.errors import KerasMissing


@contextlib.contextmanager
def _stderr_silenced():
    """Point file descriptor 2 at /dev/null (C++ writes there directly), then restore it."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras_quietly() -> None:
    """Import keras (and its TensorFlow backend) once, silencing native start-up logging.

    Python exceptions still propagate; only what native code prints during the import (and GPU
    discovery) is dropped.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        return
    with _stderr_silenced():
        try:
            import keras
        except ModuleNotFoundError as exc:
            if exc.name not in ("keras", "tensorflow", "h5py"):
                raise
            raise KerasMissing from None

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # GPU discovery (cuInit) logs its failures from C++ on machines without a working
            # driver; done here once, inside the silence, it is cached for the process.
            tf.config.list_physical_devices()


class _QuietFirstImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The first import of keras or tensorflow, wherever it happens, goes through
    `import_keras_quietly`; until then neither is loaded (argument errors and ONNX-only commands
    never pay TensorFlow's start-up)."""

    NAMES = frozenset({"keras", "tensorflow"})

    def find_spec(self, name: str, path: object = None, target: object = None):
        if name not in self.NAMES:
            return None
        sys.meta_path.remove(self)
        import_keras_quietly()
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return sys.modules[spec.name]  # imported just now by import_keras_quietly

    def exec_module(self, module) -> None:
        """Nothing to run: the module is already imported."""


def import_keras_quietly_when_needed() -> None:
    """Defer keras/tensorflow until something imports them, then import them quietly."""
    if "keras" not in sys.modules and not any(isinstance(f, _QuietFirstImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFirstImport())
