"""Finding the input files under the paths a user gives, lazily and in a stable order."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from batchclf.scan.decode import SUFFIXES

IGNORED_NAMES = ("Thumbs.db", ".DS_Store", "desktop.ini")
IGNORED_PATTERNS = (".*", "*.part", "*.tmp", "*.crdownload", "~$*", "*.partial", "*.swp")
IGNORED_DIRS = ("@eaDir", "__MACOSX")


@dataclass(frozen=True)
class Candidate:
    root: Path  # the folder the user named (for a file argument, its parent)
    path: Path
    escaped: bool = False  # a symlink leading outside ``root``: reported, never read

    @property
    def relative(self) -> str:
        # String slicing, not Path.relative_to: this runs once per file on the hot path.
        root = os.fspath(self.root).rstrip(os.sep) + os.sep
        path = os.fspath(self.path)
        return (path[len(root) :] if path.startswith(root) else path).replace(os.sep, "/")


_IGNORED_EXACT = frozenset(IGNORED_NAMES + IGNORED_DIRS)
# One compiled pattern: this runs for every file found and every watchdog event.
_IGNORED_PATTERN = re.compile("|".join(fnmatch.translate(pattern) for pattern in IGNORED_PATTERNS))


def is_ignored(name: str) -> bool:
    """Hidden, temporary and OS clutter files that are never inputs."""
    return name in _IGNORED_EXACT or _IGNORED_PATTERN.match(name) is not None


def discover(paths: Iterable[Path]) -> Iterator[Candidate]:
    """Yield every input file under ``paths``: recursive, sorted, ignoring clutter.

    Symlinked folders are not entered; a symlinked file is read only if it
    resolves inside its root, otherwise it is yielded with ``escaped=True``
    so the job reports it instead of silently dropping it.
    """
    for given in paths:
        given = Path(given)
        if given.is_dir() and not given.is_symlink():
            yield from _walk(given, given)
        else:
            yield Candidate(given.parent, given)


def _walk(root: Path, folder: Path) -> Iterator[Candidate]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return
    real_root = os.path.realpath(root)
    for entry in entries:
        if is_ignored(entry.name):
            continue
        path = Path(entry.path)
        if entry.is_symlink():
            if entry.is_dir():
                continue
            target = os.path.realpath(entry.path)
            inside = os.path.commonpath([real_root, target]) == real_root
            yield Candidate(root, path, escaped=not inside)
        elif entry.is_dir(follow_symlinks=False):
            if Path(entry.name).suffix.lower() in SUFFIXES:
                # Looks like an image but is a folder: say so in the report, then search it.
                yield Candidate(root, path)
            yield from _walk(root, path)
        else:
            yield Candidate(root, path)
