"""The memory an ONNX model needs to run a batch, estimated from its graph before anything is
allocated: its weights, and per sample the most bytes of tensors alive at once when its nodes run
in order (inputs and outputs included), as onnxruntime's planner frees each tensor after its last
use. `bench` and `predict` refuse a batch that cannot fit, naming one that can."""

from __future__ import annotations

import math
from pathlib import Path

from rescompile.analysis.memory import available_bytes
from rescompile.errors import RescompileError


def _bytes_per_sample(value) -> int | None:
    """Bytes of one sample of a tensor (all but its first dimension), None where unknown."""
    from onnx.helper import tensor_dtype_to_np_dtype

    tensor = value.type.tensor_type
    dims = tensor.shape.dim
    if not dims or not all(d.HasField("dim_value") for d in dims[1:]):
        return None
    try:
        itemsize = tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    return math.prod(d.dim_value for d in dims[1:]) * itemsize


def footprint(path: Path, sample_shape: tuple[int, ...]) -> tuple[int, int]:
    """(bytes of weights, peak bytes per sample of live tensors) of the ONNX model at `path`,
    whose one image input takes samples of `sample_shape` (symbolic sizes pinned to it)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
        stored = {init.name for init in model.graph.initializer}
        image = next(value for value in model.graph.input if value.name not in stored)
        for dim, size in zip(image.type.tensor_type.shape.dim[1:], sample_shape, strict=True):
            dim.dim_value = size
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RescompileError(f"{path}: cannot read the ONNX graph to size it ({first})") from None
    weights = sum(
        len(init.raw_data) or math.prod(init.dims) * 4 for init in graph.initializer
    )  # typed fields hold 4 bytes or more
    sizes = {
        value.name: size
        for value in [*graph.value_info, *graph.output, *graph.input]
        if (size := _bytes_per_sample(value)) is not None
    }
    last_use = {name: index for index, node in enumerate(graph.node) for name in node.input}
    kept = {value.name for value in graph.output}
    alive = {value.name for value in graph.input if value.name not in stored}
    live = peak = sum(sizes.get(name, 0) for name in alive)
    for index, node in enumerate(graph.node):
        fresh = [name for name in node.output if name and name not in alive]
        alive.update(fresh)
        live += sum(sizes.get(name, 0) for name in fresh)
        peak = max(peak, live)
        for name in {*node.input, *fresh}:
            if name in alive and name not in kept and last_use.get(name, -1) <= index:
                alive.discard(name)
                live -= sizes.get(name, 0)
    return weights, peak


def _gib(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB"


def require_batch_memory(path: Path, batch: int, sample_shape: tuple[int, ...], advice: str) -> None:
    """Refuse a batch whose estimate exceeds free memory, with `advice` formatted with the
    largest batch that fits (e.g. "pass --batch-size {}")."""
    weights, per_sample = footprint(path, sample_shape)
    have = available_bytes()
    need = weights + batch * per_sample
    if need <= have:
        return
    fits = (have - weights) // per_sample if per_sample else 0
    advice = advice.format(fits) if fits >= 1 else "not even one image fits"
    raise RescompileError(
        f"{path}: a batch of {batch} needs about {_gib(need)} ({per_sample:,} bytes of tensors per image,"
        f" {weights:,} of weights) but {_gib(have)} is available; {advice}"
    )
