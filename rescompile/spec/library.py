"""The spec library shipped in the package: finding spec files, and a spec by name."""

from __future__ import annotations

import difflib
from pathlib import Path

from rescompile.errors import RescompileError
from rescompile.fileio import model_file_kind
from rescompile.resources import resource_dir
from rescompile.spec.loader import load_spec


def library_dir() -> Path:
    """The spec library: the copy packaged in a wheel, or the repository's specs/."""
    return resource_dir("specs")


def library_specs(library: Path | None = None) -> list[Path]:
    """Every spec file of the library, except the `_*.yaml` bases, sorted by relative path."""
    library = library_dir() if library is None else library
    found = [path for path in library.rglob("*.yaml") if not path.name.startswith("_")]
    return sorted(found, key=lambda path: path.relative_to(library).as_posix())


def exists(path: Path) -> bool:
    """Whether `path` exists; False for a name the system cannot even look up (NUL, too long)."""
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long, a NUL byte...
        return False


def _by_relative_name(library: Path, text: str) -> Path | None:
    """`cifar/resnet56`, `cifar/resnet56.yaml` (or `specs/cifar/resnet56.yaml`) in the library."""
    names = [text, f"{text}.yaml"]
    parts = Path(text).parts
    if len(parts) > 1 and parts[0] == "specs":  # a repository path typed outside the repository
        rest = Path(*parts[1:]).as_posix()
        names += [rest, f"{rest}.yaml"]
    root = library.resolve()
    for name in names:
        try:
            path = library / name
            if path.is_file() and not path.name.startswith("_") and path.resolve().is_relative_to(root):
                return path
        except (OSError, ValueError):
            continue
    return None


def network_names(library: Path | None = None) -> dict[str, Path]:
    """The library's specs by network name (the spec's `name:` field)."""
    names: dict[str, Path] = {}
    for path in library_specs(library):
        try:
            names.setdefault(load_spec(path).name, path)
        except RescompileError:
            continue
    return names


_MODEL_FILE_USE = {
    "a Keras model (.keras)": "export, predict and evaluate take it as MODEL",
    "an ONNX model": "predict, bench, evaluate and `table --from-onnx` take it",
    "HDF5 weights": "build and train take it as --weights",
}


def refuse_model_file(path: Path) -> None:
    """Say what a model or weights file given where a spec is expected is, and where it goes."""
    kind = model_file_kind(path)
    if kind is not None:
        raise RescompileError(f"{path} is {kind}, not a spec (a YAML stage table): {_MODEL_FILE_USE[kind]}")


def resolve_spec(text: str | Path) -> Path:
    """The spec file a user means: an existing path as is; otherwise a library spec named by its
    path relative to the library (`resnet50`, `cifar/resnet56`, with or without .yaml) or by its
    network name (`cifar_resnet56`)."""
    given = Path(text)
    if exists(given) and not given.is_dir():
        refuse_model_file(given)
        return given
    text = str(text)
    library = library_dir()
    found = _by_relative_name(library, text)
    if found is not None:
        return found
    names = network_names(library)
    key = text.removesuffix(".yaml")
    if key in names:
        return names[key]
    if exists(given):  # a folder: let the command say it is not a spec file
        return given
    from rescompile.spec.yamlsrc import short_repr

    relative = [path.relative_to(library).with_suffix("").as_posix() for path in library_specs(library)]
    close = difflib.get_close_matches(key, sorted({*relative, *names}), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise RescompileError(
        f"{short_repr(text)}: no such file, and no library spec of that name{hint}; "
        "`rescompile list` shows the library"
    )


def spec_label(path: str | Path) -> str:
    """How to name a spec to a user anywhere: its library name (`cifar/resnet20`) for a spec of
    the shipped library, else its file name."""
    path = Path(path)
    try:
        return path.resolve().relative_to(library_dir().resolve()).with_suffix("").as_posix()
    except (ValueError, OSError):
        return path.name


def spec_completions(incomplete: str) -> list[str]:
    """Shell completions of a SPEC argument: library names (`resnet50`, `cifar/resnet20`), and the
    spec files and folders on disk, that start with what is typed."""
    library = library_dir()
    names = [path.relative_to(library).with_suffix("").as_posix() for path in library_specs(library)]
    head = incomplete.rpartition("/")[0]
    prefix = f"{head}/" if head else ""
    try:
        local = [
            prefix + path.name + ("/" if path.is_dir() else "")
            for path in Path(head or ".").iterdir()
            if not path.name.startswith(".") and (path.is_dir() or path.suffix in (".yaml", ".yml", ".json"))
        ]
    except OSError:
        local = []
    return sorted(name for name in {*names, *local} if name.startswith(incomplete))


def resolve_spec_args(paths: list[Path] | None) -> list[Path]:
    """The SPEC arguments of `check` and `table`: existing files and folders as they are, a library
    folder such as `cifar` too, names resolved; none means specs/ here if any, else the library."""
    if not paths:
        return [Path("specs")] if Path("specs").is_dir() else [library_dir()]
    library = library_dir()
    resolved = []
    for path in paths:
        folder = library / path
        if exists(path):
            resolved.append(path)
        elif path == Path("specs"):  # the repository's library, outside the repository
            resolved.append(library)
        elif exists(folder) and folder.is_dir() and folder.resolve().is_relative_to(library.resolve()):
            resolved.append(folder)
        else:
            resolved.append(resolve_spec(path))
    return resolved


def find_specs(paths: list[str | Path]) -> list[Path]:
    """Spec files named by `paths`; a folder means every spec below it except `_*.yaml` bases."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.yaml")) if not p.name.startswith("_"))
        elif path.exists():
            refuse_model_file(path)
            found.append(path)
        else:
            raise RescompileError(f"{path}: no such file or folder")
    if not found:
        raise RescompileError(f"no spec files in {', '.join(map(str, paths))}")
    return found
