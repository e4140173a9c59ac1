"""Finding the input files under the paths a user gives, lazily and in a stable order."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from batchclf.scan.decode import SUFFIXES
from batchclf.jobs.inputs import real, within

IGNORED_NAMES = ("Thumbs.db", ".DS_Store", "desktop.ini")
IGNORED_PATTERNS = (".*", "*.part", "*.tmp", "*.crdownload", "~$*", "*.partial", "*.swp")
IGNORED_DIRS = ("@eaDir", "__MACOSX")


def display_name(relative: str) -> str:
    """A file name as reports show it: always valid UTF-8, its original bytes recoverable.

    Names that are not UTF-8 (old Windows/Samba clients) reach Python with
    surrogate escapes, which no UTF-8 report can hold.  Each undecodable byte
    is shown as the four characters ``\\xff``; ``os.fsencode`` of the name, not
    this text, is the real file name.
    """
    if relative.isascii():  # the common case, decided without encoding
        return relative
    return os.fsencode(relative).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Candidate:
    root: Path  # the folder the user named (for a file argument, its parent): symlinks must stay inside it
    path: Path
    escaped: bool = False  # a symlink leading outside ``root``: reported, never read
    unreadable: str | None = None  # why discovery could not use this entry (a folder it cannot list)
    base: Path | None = None  # what ``relative`` is relative to, when not ``root`` (several roots)

    @property
    def relative(self) -> str:
        # String slicing, not Path.relative_to: this runs once per file on the hot path.
        base = os.fspath(self.root if self.base is None else self.base).rstrip(os.sep) + os.sep
        path = os.fspath(self.path)
        return display_name((path[len(base) :] if path.startswith(base) else path).replace(os.sep, "/"))


_IGNORED_EXACT = frozenset(IGNORED_NAMES + IGNORED_DIRS)
# One compiled pattern: this runs for every file found and every watchdog event.
_IGNORED_PATTERN = re.compile("|".join(fnmatch.translate(pattern) for pattern in IGNORED_PATTERNS))


def is_ignored(name: str) -> bool:
    """Hidden, temporary and OS clutter files that are never inputs."""
    return name in _IGNORED_EXACT or _IGNORED_PATTERN.match(name) is not None


def _root_of(given: Path) -> Path:
    return given if given.is_dir() else given.parent


def files_base(paths: Iterable[Path]) -> Path:
    """The folder rows' ``file`` names are relative to.

    One path: the folder itself (a file's parent), so names read as before.
    Several: their common parent, so ``a/x.png`` and ``b/x.png`` stay apart.
    """
    roots = [_root_of(Path(given)) for given in paths]
    if len(roots) == 1:
        return roots[0]
    return Path(os.path.commonpath([os.path.abspath(root) for root in roots]))


def discover(paths: Iterable[Path]) -> Iterator[Candidate]:
    """Yield every input file under ``paths``: recursive, sorted, ignoring clutter.

    A folder given by the user is walked even through a symlink.  Inside it,
    symlinked folders are not entered, and a symlinked file is read only if
    it resolves inside its root; otherwise it is yielded with ``escaped=True``
    so the job reports it instead of silently dropping it.
    """
    paths = [Path(given) for given in paths]
    several = len(paths) > 1
    base = files_base(paths) if several else None
    for given in paths:
        if several:  # names are cut from absolute paths, as the common base is
            given = Path(os.path.abspath(given))
        if given.is_dir():
            yield from _walk(given, base)
        else:
            yield Candidate(given.parent, given, base=base)


def _walk(root: Path, base: Path | None) -> Iterator[Candidate]:
    """Depth first in name order, with an explicit stack: a tree of any depth cannot exhaust recursion."""
    real_root = real(root)
    stack = [iter(_listing(root, root, base))]
    while stack:
        for entry in stack[-1]:
            if isinstance(entry, Candidate):  # a folder that cannot be listed
                yield entry
            elif is_ignored(entry.name):
                continue
            elif _is_real_folder(entry):
                if os.path.splitext(entry.name)[1].lower() in SUFFIXES:
                    # Looks like an image but is a folder: say so in the report, then search it.
                    yield Candidate(root, Path(entry.path), base=base)
                stack.append(iter(_listing(entry.path, root, base)))  # a str: no Path parsing per folder
                break  # into the folder now; this level resumes where it stopped
            elif entry.is_symlink():
                if not _is_folder(entry):  # symlinked folders are not entered
                    escaped = not within(real_root, real(entry.path))  # the one containment rule (jobs.inputs)
                    yield Candidate(root, Path(entry.path), escaped=escaped, base=base)
            else:
                yield Candidate(root, Path(entry.path), base=base)
        else:
            stack.pop()


def _listing(folder: str | Path, root: Path, base: Path | None) -> list:
    """A folder's entries sorted by name, or a candidate saying why it cannot be listed (its files would be lost silently)."""
    try:
        return sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        return [Candidate(root, Path(folder), unreadable=f"cannot list folder: {exc.strerror or exc}", base=base)]


def _is_real_folder(entry: os.DirEntry) -> bool:
    try:  # where the file system gives no entry type, this is an lstat, which can fail

        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_folder(entry: os.DirEntry) -> bool:
    """Whether a symlink leads to a folder; a loop or a dangling link does not (it becomes a failed row)."""
    try:
        return entry.is_dir()
    except OSError:
        return False
