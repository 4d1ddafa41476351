"""What a `diff` operand names: spec files of the working tree (a file, a folder, a library name)
or of a git revision (`REV:PATH`), each with the reader its `extends:` bases are resolved by."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from rescompile.errors import RescompileError, printable
from rescompile.spec.gitrev import GitRevision, split_operand
from rescompile.spec.library import exists
from rescompile.spec.loader import LocalFiles, SpecFiles


@dataclass(frozen=True)
class SpecRef:
    """One spec file and where it is read from."""

    path: Any
    """A Path of the file system, or a PurePosixPath from the root of a git revision."""
    files: SpecFiles


@dataclass(frozen=True)
class Operand:
    """The spec files an operand names; `folder` when it named a folder (its networks are paired
    with the other side's by name)."""

    refs: list[SpecRef]
    folder: bool


def project_spec_folder(cwd: Path | None = None) -> str:
    """The project's spec folder: `[tool.rescompile] specs` of ./pyproject.toml, else `specs`."""
    pyproject = (cwd or Path.cwd()) / "pyproject.toml"
    try:
        settings = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("rescompile", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "specs"
    folder = settings.get("specs") if isinstance(settings, dict) else None
    return folder if isinstance(folder, str) and folder else "specs"


def _is_spec(name: str) -> bool:
    return not PurePosixPath(name).name.startswith("_")


def _project_path(text: str) -> Path | None:
    """`text` in the working tree as a path, or as a name in the project's spec folder (with or
    without `.yaml`); None when neither exists."""
    folder = Path(project_spec_folder())
    for candidate in (Path(text), Path(f"{text}.yaml"), folder / text, folder / f"{text}.yaml"):
        if text and exists(candidate):
            return candidate
    return None


def local_operand(text: str) -> Operand:
    """A file, a folder or a library name of the working tree: the project's spec folder first,
    then the library shipped with rescompile."""
    from rescompile.spec.library import find_specs, resolve_spec_args

    found = _project_path(text)
    resolved = resolve_spec_args([found if found is not None else Path(text)])
    files = LocalFiles()
    paths = dict.fromkeys(path.resolve() for path in find_specs(resolved))  # a symlinked spec once
    refs = [SpecRef(path, files) for path in paths]
    return Operand(refs, folder=resolved[0].is_dir())


def revision_operand(revision: GitRevision, path_text: str) -> Operand | None:
    """PATH at a revision: a file, a folder (its specs but the `_*.yaml` bases), or a library
    reference resolved at the same revision (`resnet50`, `cifar/resnet56`: in the project's spec
    folder, with or without `.yaml`); None when the revision has none of them."""
    text = f"{revision.rev}:{path_text}"
    path = revision.path(path_text or ".")
    candidates = [path]
    if path.name:
        candidates.append(path.with_name(path.name + ".yaml"))
    if path_text and not PurePosixPath(path_text).is_absolute() and revision.kind(path) is None:
        library = revision.path(project_spec_folder(revision.cwd))
        candidates += [library / path_text, library / f"{path_text}.yaml"]
    for candidate in candidates:
        kind = revision.kind(candidate)
        if kind == "tree":
            found = [p for p in revision.yaml_files(candidate) if _is_spec(p.name)]
            if not found:
                raise RescompileError(f"{printable(text)}: no spec files at that revision")
            return Operand([SpecRef(p, revision) for p in found], True)
        if kind == "blob":
            return Operand([SpecRef(candidate, revision)], False)
        if kind is not None:
            raise RescompileError(f"{printable(text)}: a {kind} at that revision, not a spec file")
    return None


def operand(text: str) -> Operand:
    """The spec files `text` names: `REV:PATH` at a git revision, else of the working tree."""
    split = split_operand(text)
    if split is None:
        return local_operand(text)
    rev, path_text = split
    found = revision_operand(GitRevision(rev), path_text)
    if found is None:
        raise RescompileError(f"{printable(path_text)}: not found at revision {printable(rev)}")
    return found


def base_operands(rev: str, paths: list[str]) -> list[tuple[Operand | None, Operand | None]]:
    """`diff --base REV PATH...`: the PATHs (default: the project's spec folder) at REV and in the
    working tree, as one pair of sides whose networks are paired by name (a PATH missing on one
    side adds nothing there: its networks are added, or removed)."""
    revision = GitRevision(rev)
    old_refs: dict[object, SpecRef] = {}
    new_refs: dict[object, SpecRef] = {}
    for text in paths or [project_spec_folder()]:
        old = revision_operand(revision, text)
        new = local_operand(text) if _project_path(text) is not None else None
        if old is None and new is None:
            raise RescompileError(f"{printable(text)}: not found at revision {printable(rev)} nor here")
        old_refs.update({ref.path: ref for ref in old.refs} if old else {})
        new_refs.update({ref.path: ref for ref in new.refs} if new else {})
    # every PATH together, each file once: overlapping PATHs do not count a network twice
    both = Operand(list(old_refs.values()), True), Operand(list(new_refs.values()), True)
    return [both]
