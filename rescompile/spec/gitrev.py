"""Spec files at a git revision, read from the repository's objects (no checkout, no copies).

An operand `REV:PATH` names PATH (relative to the working directory, as git reads `REV:./PATH`)
in the tree of commit REV. The tree is listed once, with every blob's size, so that a file is
refused for its size before it is read; blobs are then read through one `git cat-file --batch`.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import weakref
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rescompile.errors import RescompileError, printable
from rescompile.spec.yamlsrc import check_size, decode_text, short_repr

MAX_TREE_ENTRIES = 1_000_000
"""Entries of one commit's tree that are listed (a large monorepo holds a few hundred thousand)."""


def split_operand(text: str) -> tuple[str, str] | None:
    """`HEAD~1:specs/x.yaml` -> ("HEAD~1", "specs/x.yaml"); None when `text` is an existing path or
    holds no colon (a path of the working tree)."""
    from rescompile.spec.library import exists

    if ":" not in text or exists(Path(text)):
        return None
    rev, _, path = text.partition(":")
    return (rev, path) if rev else None


def _git(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    git = shutil.which("git")
    if git is None:
        raise RescompileError("git is not installed; a REV:PATH operand reads the repository through it")
    return subprocess.run([git, *arguments], cwd=cwd, capture_output=True, check=False)


def _first_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return printable(lines[0]) if lines else ""


@dataclass(frozen=True)
class Entry:
    """One entry of a commit's tree: a blob (with its size), a tree, a symlink or a submodule."""

    kind: str
    oid: str
    size: int


class GitRevision:
    """The files of one commit, addressed by paths relative to the repository's root."""

    def __init__(self, rev: str, cwd: Path | None = None) -> None:
        self.rev = rev
        self.cwd = Path.cwd() if cwd is None else cwd
        top = _git(["rev-parse", "--show-toplevel"], self.cwd)
        if top.returncode:
            raise RescompileError(
                f"{printable(str(self.cwd))}: not a git repository (needed by {short_repr(rev)}:PATH;"
                f" git: {_first_line(top.stderr)})"
            )
        self.root = Path(os.fsdecode(top.stdout.strip()))
        if rev.startswith("-"):
            raise RescompileError(f"{short_repr(rev)}: unknown git revision")
        commit = _git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], self.root
        )
        if commit.returncode:
            raise RescompileError(f"{short_repr(rev)}: unknown git revision in {printable(str(self.root))}")
        self.commit = commit.stdout.decode().strip()
        self._entries: dict[str, Entry] | None = None
        self._reader: subprocess.Popen[bytes] | None = None
        self._texts: dict[str, str] = {}

    def path(self, text: str) -> PurePosixPath:
        """A path typed relative to the working directory (or absolute), relative to the root."""
        absolute = os.path.normpath(os.path.join(os.path.abspath(self.cwd), text))
        relative = os.path.relpath(absolute, self.root)
        if relative == ".." or relative.startswith("../"):
            raise RescompileError(f"{self.rev}:{printable(text)}: outside the repository {self.root}")
        return PurePosixPath(relative)

    def display(self, path: PurePosixPath) -> str:
        """How messages name a file at this revision: `REV:path/from/root`."""
        return printable(f"{self.rev}:{path.as_posix()}")

    @property
    def entries(self) -> dict[str, Entry]:
        """Every entry of the commit's tree by path, listed once."""
        if self._entries is None:
            listing = _git(["ls-tree", "-r", "-t", "-l", "-z", "--full-tree", self.commit], self.root)
            if listing.returncode:
                raise RescompileError(f"{self.rev}: cannot list the tree ({_first_line(listing.stderr)})")
            self._entries = {}
            for record in listing.stdout.split(b"\0"):
                if not record:
                    continue
                if len(self._entries) >= MAX_TREE_ENTRIES:
                    raise RescompileError(f"{self.rev}: tree of more than {MAX_TREE_ENTRIES} entries")
                meta, _, name = record.partition(b"\t")
                mode, kind, oid, size = meta.split()
                kind = "symlink" if mode == b"120000" else kind.decode()
                self._entries[os.fsdecode(name)] = Entry(kind, oid.decode(), int(size) if size != b"-" else 0)
        return self._entries

    def kind(self, path: PurePosixPath) -> str | None:
        """'blob', 'tree', 'symlink' or 'commit' (a submodule); None when absent at the revision."""
        if path == PurePosixPath("."):
            return "tree"
        entry = self.entries.get(path.as_posix())
        return entry.kind if entry else None

    def yaml_files(self, folder: PurePosixPath) -> list[PurePosixPath]:
        """The `*.yaml` blobs below `folder`, sorted."""
        prefix = "" if folder == PurePosixPath(".") else folder.as_posix() + "/"
        return sorted(
            PurePosixPath(name)
            for name, entry in self.entries.items()
            if name.startswith(prefix) and name.endswith(".yaml") and entry.kind == "blob"
        )

    def base(self, path: PurePosixPath, name: str) -> tuple[PurePosixPath, bool]:
        """The file an `extends: name` in `path` names, and whether it is a file at this revision."""
        joined = posixpath.normpath(posixpath.join(path.parent.as_posix(), name))
        if joined == ".." or joined.startswith("../") or posixpath.isabs(name):
            return PurePosixPath(joined), False
        return PurePosixPath(joined), self.kind(PurePosixPath(joined)) == "blob"

    def read_text(self, path: PurePosixPath, display: str) -> str:
        """A blob's text, refused for its size (from the listing) before it is read."""
        from rescompile.errors import SpecError

        key = path.as_posix()
        if key in self._texts:
            return self._texts[key]
        entry = self.entries.get(key)
        if entry is None:
            raise SpecError(display, None, "", f"not found at revision {short_repr(self.rev)}")
        if entry.kind != "blob":
            raise SpecError(display, None, "", f"not a regular file at revision {short_repr(self.rev)}")
        check_size(entry.size, display)
        self._texts[key] = decode_text(self._blob(entry), display)
        return self._texts[key]

    def _blob(self, entry: Entry) -> bytes:
        if self._reader is None:
            self._reader = subprocess.Popen(
                [shutil.which("git") or "git", "cat-file", "--batch"],
                cwd=self.root,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            weakref.finalize(self, _close, self._reader)
        assert self._reader.stdin is not None and self._reader.stdout is not None
        self._reader.stdin.write(entry.oid.encode() + b"\n")
        self._reader.stdin.flush()
        header = self._reader.stdout.readline().split()
        if len(header) != 3 or int(header[2]) != entry.size:
            raise RescompileError(f"{self.rev}: git cat-file answered {_first_line(b' '.join(header))!r}")
        data = self._reader.stdout.read(entry.size + 1)  # the blob and its newline
        return data[:-1]


def _close(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()
