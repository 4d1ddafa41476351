"""A datum's trip through the layers: every call of a rescompile function that receives it.

Run a command in-process under `sys.setprofile` and record, in call order, each call of a function
defined in a `rescompile.*` module that receives the datum: as an argument (positional, keyword,
*args, **kwargs), or held one level deep by an argument (an attribute, e.g. a dataclass or pydantic
field, or an element of a list/tuple/set/dict argument). Each call maps to its module's layer in
tests/commands/test_layout.py's LAYERS. A *climb* is a step of the trip from a lower layer to a strictly
higher one: the datum went back up towards the CLI and was passed down again.

`python -m tests.trips` prints three trips (train's options, export's source, gradients' specs).
"""

from __future__ import annotations

import contextlib
import dis
import inspect
import io
import itertools
import os
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath

from tests.commands.test_layout import LAYER_OF, _part

ROOT = Path(__file__).resolve().parent.parent
Step = tuple[str, str, int]
"""(module, function's qualified name, layer index)."""

_RESUME = dis.opmap.get("RESUME")
_SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
_CONTAINER_ITEMS = 256
"""Elements of a list/tuple/set/dict argument looked at (the datum sits near the front)."""


def _resumed(frame: types.FrameType) -> bool:
    """Whether a 'call' event is a generator or coroutine resuming (not a new call)."""
    code = frame.f_code
    if not code.co_flags & _SUSPENDABLE or _RESUME is None:
        return False
    at = frame.f_lasti
    raw = code.co_code
    # CPython 3.11+: RESUME's argument is 0 at a function's start, nonzero after a yield or await.
    return 0 <= at < len(raw) - 1 and raw[at] == _RESUME and raw[at + 1] & 3 != 0


def _arguments(frame: types.FrameType) -> Iterator[object]:
    """The values a call received: named parameters, then *args' and **kwargs' contents."""
    code = frame.f_code
    local = frame.f_locals
    count = code.co_argcount + code.co_kwonlyargcount
    names = code.co_varnames
    for name in names[:count]:
        if name in local:
            yield local[name]
    if code.co_flags & inspect.CO_VARARGS:
        yield from local.get(names[count], ())
        count += 1
    if code.co_flags & inspect.CO_VARKEYWORDS:
        yield from local.get(names[count], {}).values()


def _held(value: object, elements: bool) -> Iterator[object]:
    """What `value` holds one level deep: its attributes (instance dict, slots), or with `elements`
    a list's, tuple's, set's or dict's values."""
    if isinstance(value, (str, bytes, PurePath, int, float, bool, type(None), type, types.ModuleType)):
        return
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        if elements:
            yield from list(value.values() if isinstance(value, dict) else value)[:_CONTAINER_ITEMS]
        return
    try:
        attributes = object.__getattribute__(value, "__dict__")
    except (AttributeError, TypeError):
        attributes = None
    if isinstance(attributes, dict):
        yield from list(attributes.values())
    for name in getattr(type(value), "__slots__", ()):
        if isinstance(name, str):
            with contextlib.suppress(Exception):
                yield object.__getattribute__(value, name)


def _safe(match: Callable[[object], bool], value: object) -> bool:
    """`match(value)`, False where it raises (odd objects, ambiguous array comparisons)."""
    try:
        return bool(match(value))
    except Exception:
        return False


def _receives(frame: types.FrameType, match: Callable[[object], bool], elements: bool) -> bool:
    """Whether the call in `frame` received the datum, directly or one level deep."""
    values = list(_arguments(frame))
    if any(_safe(match, value) for value in values):
        return True
    return any(_safe(match, inner) for value in values for inner in _held(value, elements))


def collapse(steps: list[Step]) -> list[Step]:
    """`steps` without consecutive repeats of the same (module, function)."""
    kept: list[Step] = []
    for step in steps:
        if not kept or kept[-1][:2] != step[:2]:
            kept.append(step)
    return kept


def trip(argv: list[str], match: Callable[[object], bool], elements: bool = True) -> list[Step]:
    """Run `rescompile ARGV` in-process; the calls of rescompile functions that received the datum
    `match` recognises, in call order, consecutive repeats collapsed. Raises if the command fails.
    `elements`: an argument holding the datum in a list, tuple, set or dict counts too (as one
    holding it in an attribute does); without it, `run(named_specs)` is not a step.
    """
    from typer._click.exceptions import UsageError

    from rescompile.cli import app
    from rescompile.quiet import import_keras_quietly_when_needed

    steps: list[Step] = []

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("rescompile") or event != "call":
            return
        if module != "rescompile" and not module.startswith("rescompile."):
            return
        if _resumed(frame) or not _receives(frame, match, elements):
            return
        code = frame.f_code
        steps.append((module, getattr(code, "co_qualname", code.co_name), LAYER_OF[_part(module)]))

    import_keras_quietly_when_needed()
    output = io.StringIO()
    before, before_threads = sys.getprofile(), threading.getprofile()
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        with contextlib.redirect_stdout(output):
            status = app(args=argv, standalone_mode=False, prog_name="rescompile")
    except UsageError as exc:
        raise RuntimeError(f"rescompile {' '.join(argv)}: {exc.format_message()}") from exc
    finally:
        sys.setprofile(before)
        threading.setprofile(before_threads)
    if isinstance(status, int) and status != 0:
        raise RuntimeError(f"rescompile {' '.join(argv)} exited {status}:\n{output.getvalue()}")
    return collapse(steps)


def climbs(steps: list[Step]) -> int:
    """Steps from a lower layer to a strictly higher one."""
    return sum(1 for before, after in itertools.pairwise(steps) if after[2] > before[2])


def shown(steps: list[Step]) -> str:
    """One line per step: its layer, the module and function, `^` where the datum climbed."""
    lines = []
    for index, (module, function, layer) in enumerate(steps):
        climbed = index > 0 and layer > steps[index - 1][2]
        lines.append(f"  {'^' if climbed else ' '} {layer:2d} {module}.{function}")
    return "\n".join(lines)


def path_match(*given: str | Path) -> Callable[[object], bool]:
    """Match a str or Path equal to one of `given` as written, as resolved by `resolve_spec`, or
    as an absolute resolved path."""
    from rescompile.spec.library import resolve_spec

    targets: set[str] = set()
    for text in given:
        found = resolve_spec(text)
        targets |= {str(text), str(Path(text)), str(found), str(found.resolve())}

    def match(value: object) -> bool:
        return isinstance(value, (str, PurePath)) and str(value) in targets

    return match


SPEC = "specs/cifar/resnet20.yaml"
GRADIENT_SPECS = ("cifar/resnet20", "plain/plain20")  # the library has no cifar/plain20


def train_trip(scratch: Path) -> list[Step]:
    """Train's options (any TrainOptions) through one epoch of ResNet-20 on 128+32 images."""
    from rescompile.train.trainer import TrainOptions
    from tests.synthetic import write_cifar_tarball

    data = write_cifar_tarball(scratch / "cifar.tar.gz", train=128, test=32)
    argv = ["train", SPEC, "--data", str(data), "--recipe", "fast", "--batch-size", "32"]
    argv += ["--epochs", "1", "--set", "validation=0", "--out", str(scratch / "run")]
    return trip(argv, lambda value: isinstance(value, TrainOptions))


def export_trip(scratch: Path) -> list[Step]:
    """Export's source (the spec path) from a spec file to ONNX."""
    return trip(["export", SPEC, "-o", str(scratch / "r20.onnx")], path_match(SPEC))


def gradients_trip(scratch: Path) -> list[Step]:
    """Gradients' specs (each name given) through a one-image gradient profile."""
    argv = ["experiment", "gradients", *GRADIENT_SPECS, "--batch-size", "1", "--out", str(scratch)]
    return trip(argv, path_match(*GRADIENT_SPECS))


TRIPS: dict[str, Callable[[Path], list[Step]]] = {
    "train's options": train_trip,
    "export's source": export_trip,
    "gradients' specs": gradients_trip,
}


def main() -> None:
    """Print each trip: its steps, its climbs and how long it took."""
    os.chdir(ROOT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name, run in TRIPS.items():
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            steps = run(Path(scratch))
            took = time.perf_counter() - start
        print(f"{name}: {climbs(steps)} climbs, {len(steps)} steps, {took:.1f} s")
        print(shown(steps), flush=True)


if __name__ == "__main__":
    main()
