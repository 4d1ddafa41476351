"""The Keras path: import the generated module, build the model, load pretrained weights, freeze."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np

from rescompile import ir
from rescompile.errors import RescompileError, listing

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet"


@contextlib.contextmanager
def recursion_limit(limit: int) -> Iterator[None]:
    """Python's recursion limit raised for a while, then restored. Keras walks a model's layer graph
    recursively (building, loading): ResNet-1202 needs more than the default 1,000 frames. Left
    raised, a C recursion later in the process (json.loads of a deeply nested file) would overflow
    the stack instead of raising RecursionError."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def load_module(path: Path) -> ModuleType:
    """Import a generated model module from its file."""
    name = f"rescompile_generated_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _read_legacy_h5(path: Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> weight arrays from a keras.applications-style HDF5 weights file."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            root = handle.get("model_weights", handle)
            if "layer_names" not in root.attrs:
                raise RescompileError(f"{path}: not a Keras HDF5 weights file (no layer_names attribute)")
            weights = {}
            for raw in root.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                group = root[name]
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
                if names:
                    weights[name] = [np.asarray(group[n]) for n in names]
            return weights
    except FileNotFoundError:
        raise RescompileError(f"{path}: weights file not found") from None
    except (OSError, KeyError) as exc:
        raise RescompileError(f"{path}: cannot read weights ({exc})") from None


def _adapt_channels(kernel: np.ndarray, channels: int) -> np.ndarray:
    """Adapt a stem kernel trained on RGB to `channels` inputs: mean over RGB, repeated, rescaled."""
    mean = kernel.mean(axis=2, keepdims=True)
    return np.repeat(mean, channels, axis=2) * (kernel.shape[2] / channels)


def _layers(count: int) -> str:
    return f"{count} layer of the model has" if count == 1 else f"{count} layers of the model have"


def load_weights(
    model,
    path: str | Path,
    *,
    graph: ir.Graph | None = None,
    allow_partial: bool = False,
    weights_format: str | None = None,
) -> int:
    """Load keras.applications HDF5 weights by layer name, or a torchvision/timm checkpoint
    (`.safetensors`, `.pth`: see torch_weights; `weights_format` names its convention, else
    detected); returns how many layers were loaded.

    `imagenet` fetches the official file through keras.applications (needs a network). Layers of the
    file that the model lacks (e.g. the classifier of an include_top=False model) are skipped; a
    shape mismatch is an error listing every mismatched layer. A stem conv with other than 3 input
    channels gets the RGB kernel averaged over channels.

    Every layer of the model that has weights must find them in the file, except, with the IR
    `graph`, the head (a `*_notop.h5` backbone under a new head: reported on stderr as randomly
    initialised). Other missing layers are an error listing them, or with `allow_partial` a
    warning on stderr while the rest loads. Non-finite weights are refused. Every check runs
    before any weight is set: on error the model is unchanged.
    """
    path = Path(_fetch_imagenet(model) if str(path) == "imagenet" else path)
    saved = _read_saved(path, graph, allow_partial=allow_partial, weights_format=weights_format)
    stage_of = {node.name: node.stage for node in graph.nodes} if graph is not None else {}
    planned, mismatched, missing, new_head = [], [], [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = saved.get(layer.name)
        if arrays is None:
            (new_head if stage_of.get(layer.name) == "head" else missing).append(layer.name)
            continue
        targets = [tuple(w.shape) for w in layer.weights]
        if len(arrays) == len(targets) and arrays[0].ndim == 4 and arrays[0].shape[2] != targets[0][2]:
            arrays = [_adapt_channels(arrays[0], targets[0][2]), *arrays[1:]]
        if [a.shape for a in arrays] != targets:
            mismatched.append(f"{layer.name}: file {[a.shape for a in arrays]} vs model {targets}")
            continue
        planned.append((layer, arrays))
    if mismatched:
        raise RescompileError(
            f"{path}: {len(mismatched)} layers do not match: "
            + "; ".join(mismatched)
            + _keras_specs_hint(model)
        )
    for layer, arrays in planned:
        if any(a.dtype.kind not in "fiub" for a in arrays):
            raise RescompileError(f"{path}: layer {layer.name} has non-numeric weights")
        if not all(np.isfinite(a).all() for a in arrays):
            raise RescompileError(f"{path}: layer {layer.name} has non-finite weights (NaN or Inf)")
    if not planned:
        raise RescompileError(
            f"{path}: no layer of the file has a name in the model" + _keras_specs_hint(model)
        )
    if missing:
        message = f"{path}: {_layers(len(missing))} no weights in the file: {listing(missing)}"
        if not allow_partial:
            raise RescompileError(f"{message} (--allow-partial loads the rest)")
        print(f"warning: {message} (left randomly initialised)", file=sys.stderr, flush=True)
    if new_head:
        print(f"{path}: new head, randomly initialised: {listing(new_head)}", file=sys.stderr, flush=True)
    for layer, arrays in planned:
        layer.set_weights(arrays)
    return len(planned)


def _read_saved(
    path: Path, graph: ir.Graph | None, *, allow_partial: bool, weights_format: str | None
) -> dict[str, list[np.ndarray]]:
    """Layer name -> weight arrays in Keras' layouts, from either kind of file."""
    from rescompile.checkpoints.state_dict import is_torch_checkpoint

    if not is_torch_checkpoint(path):
        if weights_format is not None:
            raise RescompileError(
                f"--weights-format is for PyTorch checkpoints (.safetensors, .pth), not {path}"
            )
        return _read_legacy_h5(path)
    if graph is None:
        raise ValueError("internal: a PyTorch checkpoint is mapped through the network's IR")
    from rescompile.checkpoints.torch_weights import read_torch_weights
    from rescompile.keras_backend.weights import layer_weights

    return layer_weights(read_torch_weights(path, graph, weights_format, allow_partial=allow_partial), graph)


def _keras_specs_hint(model) -> str:
    """Where keras.applications' weight files fit, for a model built from another spec."""
    if model.name.startswith("keras_"):
        return ""
    return (
        "; keras.applications' weights fit the specs under keras/, which use its layer names (e.g."
        " `rescompile build keras/resnet50 --weights imagenet`)"
    )


def _fetch_imagenet(model) -> str:
    import keras

    name = model.name.removeprefix("keras_")
    known = ("ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2")
    builders = {n.lower(): n for n in known}
    if name not in builders:
        raise RescompileError(
            f"--weights imagenet needs a keras.applications-faithful spec, not {model.name}"
            + _keras_specs_hint(model)
        )
    try:
        file_name = f"{name}_weights_tf_dim_ordering_tf_kernels.h5"
        return keras.utils.get_file(file_name, f"{KERAS_WEIGHTS_URL}/{file_name}", cache_subdir="models")
    except Exception as exc:
        raise RescompileError(f"cannot fetch ImageNet weights for {builders[name]}: {exc}") from None


def seed_states(model) -> list[list[int]]:
    """The states of the model's random generators (dropout, drop-path), in layer order: a
    .keras file does not keep them, so a resumed run restores them to draw the same masks."""
    return [[int(value) for value in np.asarray(variable)] for variable in _seed_variables(model)]


def _seed_variables(model) -> list:
    """The state variables of the model's random generators, in layer order."""
    return [variable for variable in model.variables if variable.path.endswith("seed_generator_state")]


def restore_seed_states(model, states: list[list[int]]) -> None:
    """Set the random generators' states recorded by `seed_states` (same model, same order)."""
    variables = _seed_variables(model)
    if states and len(states) != len(variables):
        raise RescompileError(
            f"the run recorded {len(states)} random generators; the model has {len(variables)}"
        )
    for variable, state in zip(variables, states, strict=False):
        variable.assign(np.asarray(state, dtype=variable.dtype))


def stages_to_freeze(text: str | None, stages: int) -> int:
    """`--freeze`: `backbone` (the stem and every one of the network's `stages`) or a number of
    stages, checked."""
    if text is None:
        return 0
    count = stages if text == "backbone" else int(text) if text.isdigit() else -1
    if not 0 <= count <= stages:
        raise RescompileError(f"--freeze must be backbone or 0..{stages}, got {text!r}")
    return count


def freeze(model, graph: ir.Graph, stages: int) -> list[str]:
    """Freeze the stem and the first `stages` stages; their BatchNorm layers run in inference mode.

    Keras runs a BatchNormalization layer with trainable=False in inference mode, so frozen
    stages keep their moving statistics instead of updating them on the new data.
    """
    frozen_stages = {"input", "stem", *(plan.name for plan in graph.stages[:stages])}
    stage_of = {name: node.stage for node in graph.nodes for name in node.layer_names()}
    frozen = []
    for layer in model.layers:
        if stage_of.get(layer.name, "head") in frozen_stages:
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def zero_init_residual(model, graph: ir.Graph) -> int:
    """Set the scale (gamma) of the BatchNorm that ends each residual branch to zero, so every
    block starts as its shortcut (Goyal et al. 2017, Sec. 5.1); returns the number of layers set."""
    ends = graph.residual_branch_ends()
    for name in ends:
        layer = model.get_layer(name)
        if type(layer).__name__ != "BatchNormalization":
            raise RescompileError(
                f"zero_init_residual: the residual branch ending at {name} is a"
                f" {type(layer).__name__}, not a BatchNorm (pre-activation blocks have none to zero)"
            )
        layer.gamma.assign(np.zeros(layer.gamma.shape, layer.gamma.dtype))
    return len(ends)


def apply_l2(model, weight_decay: float) -> int:
    """Coupled SGD weight decay `weight_decay` as an L2 penalty (of half that) on every kernel
    without a regulariser of its own; returns the number of kernels given one."""
    import keras

    count = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if weight_decay and kernel is not None and getattr(layer, "kernel_regularizer", None) is None:
            kernel.regularizer = keras.regularizers.L2(weight_decay / 2)
            count += 1
    return count
