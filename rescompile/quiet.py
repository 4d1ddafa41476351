"""Import TensorFlow/Keras without the C++ start-up chatter (absl INFO lines) on stderr."""

from __future__ import annotations

import atexit
import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import threading

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


NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] "  # absl/glog: cuInit, cpu_feature_guard...
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [\w./-]+:\d+\] "  # TensorFlow's own format
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


def filter_native_logs() -> None:
    """From now on, drop the log lines TensorFlow's C++ code writes to stderr (file descriptor 2)
    at any time, not only while importing: fd 2 becomes a pipe that a thread copies to the real
    stderr, line by line, without NATIVE_LOG_LINE lines. Python's own writes to stderr (errors,
    warnings) pass through in order; at exit the pipe is drained. For the command line only."""
    sys.stderr.flush()
    real = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def copy() -> None:
        with os.fdopen(read, "rb") as lines:
            for line in lines:
                if not NATIVE_LOG_LINE.match(line):
                    os.write(real, line)

    thread = threading.Thread(target=copy, name="native-log-filter", daemon=True)
    thread.start()

    def drain() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last writer: the thread reads to the end and stops
        thread.join(timeout=5)

    atexit.register(drain)


class _QuietFirstImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The first import of keras or tensorflow, wherever it happens, goes through
    `import_keras_quietly`; until then neither is loaded (argument errors and ONNX-only commands
    never pay TensorFlow's start-up)."""

    NAMES = frozenset({"keras", "tensorflow"})

    def __init__(self, filter_logs: bool = False) -> None:
        self.filter_logs = filter_logs
        """Also drop TensorFlow's native log lines for the rest of the process (the CLI)."""

    def find_spec(self, name: str, path: object = None, target: object = None):
        if name not in self.NAMES:
            return None
        sys.meta_path.remove(self)
        import_keras_quietly()
        if self.filter_logs:
            filter_native_logs()
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return sys.modules[spec.name]  # imported just now by import_keras_quietly

    def exec_module(self, module) -> None:
        """Nothing to run: the module is already imported."""


def import_keras_quietly_when_needed(filter_logs: bool = False) -> None:
    """Defer keras/tensorflow until something imports them, then import them quietly (and with
    `filter_logs`, keep TensorFlow's later native log lines off stderr)."""
    if "keras" not in sys.modules and not any(isinstance(f, _QuietFirstImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFirstImport(filter_logs))
