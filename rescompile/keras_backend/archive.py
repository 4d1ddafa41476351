"""A .keras archive checked before Keras opens it: member names, declared sizes, the size and
nesting of its config.json (read as a bounded stream), and the recursion limit its layer count
needs. Keras walks a model's layer graph recursively, so deep networks need a raised limit; with
it raised, a config nested 100,000 levels deep would overflow the C stack (SIGSEGV) instead of
raising RecursionError, so the nesting is bounded first, by a parser that does not recurse in
Python, and the limit is raised only as far as the layers in the file need."""

from __future__ import annotations

import sys
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import pydantic_core

from rescompile.errors import RescompileError, printable

CONFIG = "config.json"
MAX_CONFIG_BYTES = 16 * 2**20
"""A Keras config takes about 1 kB per layer: ResNet-1202's 4,208 layers take ~4 MB."""
MAX_CONFIG_DEPTH = 200
"""pydantic-core's JSON parser stops at this nesting; a Keras config nests about a dozen levels."""
MAX_LAYERS = 5_000
"""The deepest library network, ResNet-1202, has 4,208 layers."""
RECURSION_PER_LAYER = 24
"""Frames Keras needs per layer to load a model (ResNet-1202 loads at 100,000)."""
MAX_MEMBERS = 1_000
EXPANSION_FLOOR = 64 * 2**20
MAX_EXPANSION = 10
"""Keras stores members uncompressed; all members together may decompress to at most
EXPANSION_FLOOR + MAX_EXPANSION times what they take in the file (Keras extracts them to disk)."""


def _refuse(path: Path, message: str) -> RescompileError:
    return RescompileError(f"{path}: {message}")


def keras_load_recursion_limit(path: Path) -> int:
    """Check the .keras file at `path` and return the recursion limit loading it needs; a file
    that is missing, truncated, hostile or too large is a one-line error naming it."""
    return max(sys.getrecursionlimit(), RECURSION_PER_LAYER * _layer_count(path, read_keras_config(path)))


def read_keras_config(path: Path) -> dict:
    """The config.json of the .keras file at `path`, its archive, size and nesting checked."""
    if not path.exists():
        raise _refuse(path, "file not found")
    if not path.is_file():
        raise _refuse(path, "not a regular file")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(path, archive.infolist())
            with archive.open(CONFIG) as stream:
                raw = stream.read(MAX_CONFIG_BYTES + 1)
    except zipfile.BadZipFile as exc:
        detail = "truncated, or not a zip archive" if "not a zip file" in str(exc) else str(exc)
        raise _refuse(path, f"not a readable .keras file ({detail})") from None
    except (OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise _refuse(path, f"not a readable .keras file ({exc})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise _refuse(path, f"{CONFIG} is larger than {MAX_CONFIG_BYTES:,} bytes, more than a Keras config")
    try:
        config = pydantic_core.from_json(raw)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise _refuse(path, f"{CONFIG} nests deeper than {MAX_CONFIG_DEPTH} levels") from None
        raise _refuse(path, f"{CONFIG} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise _refuse(path, f"{CONFIG} is not a Keras model config")
    return config


def interface(config: dict) -> tuple[tuple | None, int | None]:
    """(input shape without the batch, units of the output Dense layer) of a functional model's
    config with one input and one output; None for either where the config has another form."""
    body = config.get("config")
    layers = body.get("layers") if isinstance(body, dict) else None
    if not isinstance(layers, list):
        return None, None
    by_name = {layer.get("name"): layer for layer in layers if isinstance(layer, dict)}

    def field(end: str, key: str):
        named = body.get(end)
        layer = by_name.get(named[0]) if isinstance(named, list) and named else None
        options = layer.get("config") if isinstance(layer, dict) else None
        return options.get(key) if isinstance(options, dict) else None

    shape, units = field("input_layers", "batch_shape"), field("output_layers", "units")
    return (tuple(shape[1:]) if isinstance(shape, list) else None), (
        units if isinstance(units, int) else None
    )


def _check_members(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """Names inside the archive, a config.json of a plausible declared size, and a bounded total."""
    if len(members) > MAX_MEMBERS:
        raise _refuse(path, f"{len(members):,} archive members (a Keras model has a handful)")
    for member in members:
        name = PurePosixPath(member.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts or ":" in member.filename:
            raise _refuse(path, f"archive member '{printable(member.filename)}' points outside the archive")
    names = {member.filename for member in members}
    if CONFIG not in names:
        raise _refuse(path, f"no {CONFIG} in the archive (not a Keras model file)")
    declared = sum(member.file_size for member in members)
    stored = sum(member.compress_size for member in members)
    if declared > EXPANSION_FLOOR + MAX_EXPANSION * stored:
        raise _refuse(
            path,
            f"archive members declare {declared:,} bytes but store {stored:,}:"
            " refusing a possible decompression bomb",
        )


def _layer_count(path: Path, config: dict) -> int:
    """The layers a Keras config describes (nested models' included), at most MAX_LAYERS."""
    layers, pending = 0, [config]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if isinstance(item.get("layers"), list):
                layers += len(item["layers"])
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    if layers > MAX_LAYERS:
        raise _refuse(
            path, f"{CONFIG} describes {layers:,} layers, more than {MAX_LAYERS:,} (ResNet-1202 has 4,208)"
        )
    return layers
