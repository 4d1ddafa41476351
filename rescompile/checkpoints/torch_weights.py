"""torchvision/timm state dicts as a weight store keyed by IR node: tensors found by the IR-derived
names, checked key by key (every missing, unexpected and mis-shaped key in one error), converted
to the store's layouts (conv kernels OIHW -> HWIO, 1-D conv kernels (O, I, k) -> (k, I, O), the
classifier's (out, in) -> (in, out))."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from rescompile import ir
from rescompile.checkpoints.naming import (
    CONVENTIONS,
    IGNORED,
    NamingError,
    Param,
    detect,
    node_params,
    unused_prefixes,
)
from rescompile.checkpoints.state_dict import read_state_dict
from rescompile.errors import RescompileError, listing, printable
from rescompile.ir.weights import WeightStore

MAX_KEY = 100
"""Characters of a file's key shown in a message (torchvision's and timm's ResNets' longest has 41)."""


def to_store(array: np.ndarray) -> np.ndarray:
    """A torch tensor in the store's layout, as float32: conv (O, I, kh, kw) -> (kh, kw, I, O),
    1-D conv (O, I, k) -> (k, I, O), dense (out, in) -> (in, out), vectors as they are."""
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{array.dtype} values")
    axes = {4: (2, 3, 1, 0), 3: (2, 1, 0), 2: (1, 0)}.get(array.ndim)
    return np.asarray(array.transpose(axes) if axes else array, dtype="float32")


def read_torch_weights(
    path: Path, graph: ir.Graph, convention: str | None = None, *, allow_partial: bool = False
) -> WeightStore:
    """The weights of `graph`'s nodes from a torchvision- or timm-named checkpoint (`convention`:
    detected from the keys when None). Head nodes the file lacks or has another shape of (a new
    classifier) are left out, for the caller to report as new; so are incomplete nodes when
    `allow_partial` (the caller warns of them)."""
    if convention is not None and convention not in CONVENTIONS:
        raise RescompileError(f"--weights-format must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    state = read_state_dict(path)
    convention = convention or detect(list(state))
    try:
        nodes = node_params(graph, convention)
    except NamingError as exc:
        raise RescompileError(f"{path}: {exc}") from None
    stem = next(node.name for node in graph.nodes if isinstance(node, ir.Conv))
    used: set[str] = set()
    missing, misshaped, store = [], [], {}
    for node in nodes:
        arrays = {}
        for param, part in zip(node.params, node.parts, strict=True):
            array = state.get(param.key)
            used.add(param.key)
            if array is None or not _fits(array.shape, param, adapts=node.node == stem):
                if not node.head:
                    (missing if array is None else misshaped).append(_shape_note(param, array))
                continue
            try:
                arrays[part] = to_store(array)
            except ValueError as exc:
                raise RescompileError(f"{path}: {param.key} has {exc}") from None
        if node.params and len(arrays) == len(node.params):
            store[node.node] = arrays
    unused = unused_prefixes(graph)
    unexpected = [
        _shown(key)
        for key in state
        if key not in used and not key.endswith(IGNORED) and not key.startswith(unused)
    ]
    _report(
        path,
        convention,
        graph.name,
        missing=missing,
        unexpected=unexpected,
        misshaped=misshaped,
        allow_partial=allow_partial,
    )
    return store


def _fits(shape: tuple[int, ...], param: Param, adapts: bool) -> bool:
    """The file's shape is the model's (for the first conv, any input channels: they adapt)."""
    if adapts and len(shape) == len(param.shape) == 4:
        return shape[0] == param.shape[0] and shape[2:] == param.shape[2:]
    return tuple(shape) == param.shape


def _shown(key: str) -> str:
    """A key of the file as a message shows it: escaped, and cut where a key is implausibly long."""
    return printable(key if len(key) <= MAX_KEY else f"{key[:MAX_KEY]}...")


def _shape_note(param: Param, array: np.ndarray | None) -> str:
    if array is None:
        return param.key
    return f"{param.key} {list(array.shape)} (model {list(param.shape)})"


def _report(
    path: Path,
    convention: str,
    network: str,
    *,
    missing: list[str],
    unexpected: list[str],
    misshaped: list[str],
    allow_partial: bool,
) -> None:
    """One error for every key that does not fit; with `allow_partial`, missing and unexpected
    keys only warn (mis-shaped ones never load)."""
    parts = [
        f"{len(keys)} {what}: {listing(keys)}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if keys
    ]
    if not parts:
        return
    message = f"{path}: the {convention} checkpoint does not fit {network}: {'; '.join(parts)}"
    if misshaped:
        raise RescompileError(message)
    if not allow_partial:
        raise RescompileError(f"{message} (--allow-partial loads the rest)")
    if unexpected:
        print(
            printable(f"warning: {path}: {len(unexpected)} keys unused: {listing(unexpected)}"),
            file=sys.stderr,
            flush=True,
        )
