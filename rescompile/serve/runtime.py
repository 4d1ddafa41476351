"""onnxruntime serving: sessions with a chosen provider, prediction and benchmarking."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from rescompile.errors import RescompileError
from rescompile.fileio import refuse_non_onnx
from rescompile.onnx_backend.ort import onnxruntime
from rescompile.options import LAYOUTS
from rescompile.spec.preprocessing import Preprocessing
from rescompile.spec.schema import MAX_SIZE
from rescompile.spec.yamlsrc import short_repr

PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
MAX_CHANNELS = 64  # as the spec language's input.channels
PREPROCESS_KEYS = ("color", "scale", "mean", "std", "crop")


def choose_providers(requested: str) -> list[str]:
    """Provider list for `auto`, `cuda` or `cpu`; asking for cuda where it is absent is an error."""
    ort = onnxruntime()
    available = ort.get_available_providers()
    if requested == "auto":
        return [PROVIDERS["cuda"], PROVIDERS["cpu"]] if PROVIDERS["cuda"] in available else [PROVIDERS["cpu"]]
    if requested not in PROVIDERS:
        raise RescompileError(f"--provider must be auto, cuda or cpu, got {requested!r}")
    if PROVIDERS[requested] not in available:
        have = ", ".join(available)
        raise RescompileError(
            f"--provider {requested}: {PROVIDERS[requested]} is not available (have: {have}); "
            "install the gpu extra, and see `rescompile doctor`"
        )
    return [PROVIDERS[requested]]


def open_session(path: Path, provider: str = "auto", threads: int = 0):
    """An InferenceSession on the chosen provider, with a clear error for bad files."""
    ort = onnxruntime()
    if not path.is_file():
        raise RescompileError(f"{path}: {'not a regular file' if path.exists() else 'file not found'}")
    refuse_non_onnx(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=choose_providers(provider))
    except RescompileError:
        raise
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RescompileError(f"{path}: not a loadable ONNX model ({first_line})") from None


def metadata(session, source: str | Path | None = None) -> dict:
    """The model's metadata: spec name, input size, preprocessing, class names...

    Validated, because an ONNX file may come from anywhere: `preprocess` and `class_names` are
    parsed from JSON and checked, `input_size` and `input_channels` become ints in 1..MAX_SIZE
    and 1..64, `layout` is nhwc or nchw. Any of them may be absent (a model from elsewhere). A bad
    value is a one-line RescompileError naming the file (`source`, by default the session's
    path) and the key.
    """
    where = _source(session, source)
    props = dict(session.get_modelmeta().custom_metadata_map)
    for key, limit in (("input_size", MAX_SIZE), ("input_channels", MAX_CHANNELS)):
        if key in props:
            props[key] = _count(where, key, props[key], limit)
    if "layout" in props and props["layout"] not in LAYOUTS:
        raise _meta_error(where, "layout", f"expected nhwc or nchw, got {short_repr(props['layout'])}")
    if "class_names" in props:
        names = _json(where, "class_names", props["class_names"])
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise _meta_error(where, "class_names", f"expected a list of strings, got {short_repr(names)}")
        props["class_names"] = names
    if "preprocess" in props:
        config = _json(where, "preprocess", props["preprocess"])
        props["preprocess"] = _check_preprocess(
            where, config, props.get("input_channels", 3), props.get("input_size")
        )
    return props


@dataclass(frozen=True)
class InputGeometry:
    """What a model's single image input takes, checked against its metadata."""

    name: str
    size: int
    channels: int
    layout: str  # "nhwc" or "nchw"
    batch: int | None  # a fixed batch size, or None where any batch size is accepted

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """The shape of one image as the model takes it: (H, W, C) or (C, H, W)."""
        if self.layout == "nchw":
            return (self.channels, self.size, self.size)
        return (self.size, self.size, self.channels)


def input_geometry(
    session, meta: dict, source: str | Path | None = None, *, rgb: bool = False
) -> InputGeometry:
    """The name, size, channels, layout and batch of the model's one float32 image input.

    Refuses, as a one-line RescompileError naming the file, what rescompile cannot feed: several
    inputs, a non-float input, a rank other than 4, a symbolic height, width or channel count the
    metadata does not pin down, a non-square or absurd size (over MAX_SIZE), a size or channel
    count that disagrees with the metadata, and (with `rgb`, for images) other than 3 channels.
    `meta` is what `metadata(session)` returned.
    """
    where = _source(session, source)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(short_repr(i.name) for i in inputs)
        raise RescompileError(
            f"{where}: the model has {len(inputs)} inputs ({names}); expected one image input"
        )
    spec = inputs[0]
    name, shape = spec.name, list(spec.shape)
    label = f"{where}: input {short_repr(name)}"
    if spec.type != "tensor(float)":
        raise RescompileError(f"{label} is {spec.type}, expected a float32 image tensor (tensor(float))")
    if len(shape) != 4:
        raise RescompileError(
            f"{label} has shape {_shape_text(shape)}, expected 4 dimensions (batch, height, width, channels)"
        )
    dims = [d if isinstance(d, int) and not isinstance(d, bool) else None for d in shape]
    layout = meta.get("layout") or _guess_layout(dims)
    height, width, channels = _split(dims, layout)
    size = meta.get("input_size")
    if height is None or width is None:
        if size is None:
            raise RescompileError(
                f"{label} has a symbolic height or width ({_shape_text(shape)}) and the metadata "
                "gives no input_size"
            )
        height = size if height is None else height
        width = size if width is None else width
    if channels is None:
        channels = meta.get("input_channels")
        if channels is None:
            raise RescompileError(
                f"{label} has a symbolic channel count ({_shape_text(shape)}) and the metadata "
                "gives no input_channels"
            )
    if height != width:
        raise RescompileError(f"{label} is {height}x{width}; rescompile feeds square images")
    if not 1 <= height <= MAX_SIZE:
        raise RescompileError(f"{label} is {height}x{width}, expected a size from 1 to {MAX_SIZE}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise RescompileError(f"{label} has {_channels(channels)}, expected 1 to {MAX_CHANNELS}")
    if size is not None and size != height:
        raise RescompileError(f"{label} is {height}x{width} but the metadata says input_size {size}")
    if meta.get("input_channels", channels) != channels:
        raise RescompileError(
            f"{label} has {_channels(channels)} but the metadata says input_channels {meta['input_channels']}"
        )
    if rgb and channels != 3:
        raise RescompileError(f"{label} has {_channels(channels)}; images are read as RGB (3 channels)")
    if dims[0] is not None and dims[0] < 1:
        raise RescompileError(f"{label} has batch dimension {dims[0]}, expected at least 1")
    return InputGeometry(name, height, channels, layout, dims[0])


def run_session(session, feeds: dict, source: str | Path | None = None) -> list:
    """`session.run(None, feeds)`, with onnxruntime's failures as one line naming the file."""
    try:
        return session.run(None, feeds)
    except Exception as exc:
        raise RescompileError(f"{_source(session, source)}: inference failed ({_first_line(exc)})") from None


def _source(session, source: str | Path | None) -> str:
    if source is not None:
        return str(source)
    return str(getattr(session, "_model_path", None) or "the model")


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _split(dims: list, layout: str) -> tuple:
    """(height, width, channels) of a 4-D shape in the given layout."""
    return (dims[1], dims[2], dims[3]) if layout == "nhwc" else (dims[2], dims[3], dims[1])


def _guess_layout(dims: list) -> str:
    """A model without layout metadata: the layout whose channel count is known and whose
    height and width are equal (or both symbolic); nhwc, rescompile's default, where both or
    neither fit."""

    def fits(layout: str) -> bool:
        height, width, channels = _split(dims, layout)
        return channels is not None and height == width

    return "nchw" if fits("nchw") and not fits("nhwc") else "nhwc"


def _check_array(where: str, field: str, value: object, positive: bool, image: tuple) -> None:
    """A mean or std: finite numbers (above 0 for std) that broadcast to one image (H, W, C):
    a number, one value per channel, or a per-pixel (H, W, C) array."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        array = np.asarray(None)
    if array.dtype.kind not in "iuf" or not np.isfinite(array).all() or (positive and (array <= 0).any()):
        kind = "finite numbers above 0" if positive else "finite numbers"
        raise _meta_error(where, field, f"expected {kind}, got {short_repr(value)}")
    if array.ndim == 1 and array.shape[0] not in (1, image[2]):
        raise _meta_error(
            where, field, f"expected 1 or {image[2]} values (one per input channel), got {array.shape[0]}"
        )
    fits = array.ndim <= 3 and all(
        have in (1, want) or want is None for have, want in zip(array.shape[::-1], image[::-1], strict=False)
    )
    if not fits:
        shape = ", ".join("H" if d is None else str(d) for d in image)
        raise _meta_error(where, field, f"shape {array.shape} does not broadcast to an image ({shape})")


def _channels(count: int) -> str:
    return f"{count} channel{'' if count == 1 else 's'}"


def _shape_text(shape: list) -> str:
    """[batch, h, 32, 3]: dimensions as written, symbolic ones by name, unknown ones as ?."""
    parts = [short_repr(d, 20).strip("'") if d is not None else "?" for d in shape[:8]]
    return "[" + ", ".join(parts) + (", ..." if len(shape) > 8 else "") + "]"


def _meta_error(where: str, key: str, message: str) -> RescompileError:
    return RescompileError(f"{where}: metadata {key}: {message}")


def _json(where: str, key: str, text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else _first_line(exc)
        raise _meta_error(where, key, f"not valid JSON ({detail})") from None


def _count(where: str, key: str, text: str, limit: int) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= limit):
        raise _meta_error(where, key, f"expected an integer from 1 to {limit}, got {short_repr(text)}")
    return int(text)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_preprocess(where: str, config: object, channels: int, size: int | None) -> Preprocessing:
    """The `preprocess` metadata, checked key by key, or a one-line error."""
    if not isinstance(config, dict):
        raise _meta_error(where, "preprocess", f"expected a JSON object, got {short_repr(config)}")
    for key, value in config.items():
        field = f"preprocess.{key}"
        if key not in PREPROCESS_KEYS:
            raise _meta_error(
                where, "preprocess", f"unknown key {short_repr(key)}; expected {', '.join(PREPROCESS_KEYS)}"
            )
        if key == "color" and value not in ("RGB", "BGR"):
            raise _meta_error(where, field, f"expected RGB or BGR, got {short_repr(value)}")
        if key == "scale" and not (_number(value) and value > 0):
            raise _meta_error(where, field, f"expected a finite number above 0, got {short_repr(value)}")
        if key == "crop" and not (_number(value) and 0 < value <= 1):
            raise _meta_error(where, field, f"expected a finite number in (0, 1], got {short_repr(value)}")
        if key in ("mean", "std") and not (key == "mean" and value == "per-pixel"):
            _check_array(where, field, value, key == "std", (size, size, channels))
    try:
        return Preprocessing.model_validate(config)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise _meta_error(where, f"preprocess.{error['loc'][0]}", error["msg"]) from None


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image."""

    image: str
    classes: list[tuple[int, str, float]]


def top_k(probabilities: np.ndarray, names: list[str], images: list[str], k: int) -> list[Prediction]:
    """The k most probable classes of each image, with names where the model has them."""
    results = []
    for image, row in zip(images, probabilities, strict=True):
        best = np.argsort(-row)[:k]
        labelled = [(int(i), names[i] if i < len(names) else str(i), float(row[i])) for i in best]
        results.append(Prediction(image, labelled))
    return results


@dataclass(frozen=True)
class BenchRow:
    """Throughput and latency at one batch size."""

    batch: int
    images_per_second: float
    p50_ms: float
    p99_ms: float
    runs: int


def bench_session(
    run, input_shape: tuple[int, ...], batch: int, *, seconds: float, warmup: int, min_runs: int = 10
) -> BenchRow:
    """Time `run(x)` on random batches: warm-up, then at least `seconds` and `min_runs` runs."""
    x = np.random.default_rng(0).random((batch, *input_shape), dtype=np.float32)  # never float64 first
    for _ in range(warmup):
        run(x)
    latencies = []
    start = time.perf_counter()
    while len(latencies) < min_runs or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        run(x)
        latencies.append(time.perf_counter() - begin)
    median = float(np.median(latencies))
    return BenchRow(
        batch, batch / median, 1000 * median, 1000 * float(np.percentile(latencies, 99)), len(latencies)
    )
