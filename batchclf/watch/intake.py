"""Intake: which inbox paths are candidate inputs, finding them, and taking the stable ones.

The watcher only finds files and hands on those that are stable and new to
the journal; everything after that (decoding, labelling, reporting, moving)
happens in later stages.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from batchclf.scan.discovery import display_name, is_ignored
from batchclf.scan.prepare import Prepared
from batchclf.watch.journal import Journal
from batchclf.watch.lock import LOCK_NAME
from batchclf.watch.stability import StabilityTracker, StableFile

log = logging.getLogger("batchclf.watch")


@dataclass
class Taken:
    """A stable file taken from the inbox, with the identity the journal keys on."""

    relative: str  # inbox-relative, as reports and the journal show it (see display_name)
    path: Path  # the real path, whatever bytes its name holds
    size: int
    mtime_ns: int
    taken_at: float
    escaped: bool = False  # a symlink leading outside the inbox: reported, never read
    source: bytes | None = None  # the real inbox-relative name, when ``relative`` had to escape bytes
    prepared: list[Prepared] = field(default_factory=list)


class Intake:
    def __init__(self, inbox: Path, own_dirs: tuple[Path, ...], tracker: StabilityTracker, journal: Journal, clock):
        self.inbox, self.tracker, self.journal, self.clock = inbox, tracker, journal, clock
        self._prefix = os.fspath(inbox) + os.sep
        self._real_inbox = os.path.realpath(inbox)
        self._own_dirs = tuple(os.fspath(p) for p in own_dirs)
        self.in_progress: set[str] = set()

    def relative(self, path) -> str | None:
        """The inbox-relative name of a candidate input as reports show it, or None for clutter and our own files.

        String operations only: this runs for every watchdog event.
        """
        path = os.fspath(path)
        if not path.startswith(self._prefix):
            return None
        relative = path[len(self._prefix) :]
        parts = relative.split(os.sep)
        if not relative or parts[-1] == LOCK_NAME or any(is_ignored(part) for part in parts):
            return None
        if any(path == own or path.startswith(own + os.sep) for own in self._own_dirs):
            return None
        return display_name("/".join(parts))

    def _source(self, path, relative: str) -> bytes | None:
        """The real inbox-relative name as bytes, when it differs from the name reports show (moves need it)."""
        real = os.fspath(path)[len(self._prefix) :].replace(os.sep, "/")
        return None if real == relative else os.fsencode(real)

    def scan(self, folder: Path | None = None) -> None:
        """Queue every file under ``folder`` (default: the inbox) that is new to the journal.

        Iterative, so no depth of folders exhausts the stack; folder links are
        not entered, and an entry that cannot be looked at is logged and skipped.
        """
        stack = [os.fspath(folder or self.inbox)]
        while stack:
            directory = stack.pop()
            try:
                entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
            except OSError as exc:
                log.warning("skipping folder %s: %s", directory, exc.strerror or exc)
                continue
            found, subfolders = [], []
            for entry in entries:
                relative = self.relative(entry.path)
                if relative is None:
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        subfolders.append(entry.path)
                        continue
                    info = entry.stat()  # follows a file link (its target is what gets read); a link loop raises ELOOP
                except OSError as exc:
                    log.warning("skipping %s: %s", entry.path, exc.strerror or exc)
                    continue
                if relative in self.in_progress or entry.path in self.tracker:
                    continue
                found.append(((relative, info.st_size, info.st_mtime_ns), entry.path))
            stack.extend(reversed(subfolders))
            known = self.journal.known_many([identity for identity, _ in found])
            for identity, path in found:
                if identity not in known:
                    self.tracker.seen(Path(path))

    def take(self, stable: list[StableFile]) -> list[Taken]:
        """The stable files new to the journal, marked in progress until their batch is done."""
        candidates = []
        for path, size, mtime_ns in stable:
            relative = self.relative(path)
            if relative is not None:
                candidates.append(((relative, size, mtime_ns), path))
        known = self.journal.known_many([identity for identity, _ in candidates])
        taken, now = [], self.clock()
        for (relative, size, mtime_ns), path in candidates:
            if (relative, size, mtime_ns) in known:
                continue
            self.in_progress.add(relative)
            taken.append(
                Taken(relative, Path(path), size, mtime_ns, now, escaped=self._escapes(path), source=self._source(path, relative))
            )
        return taken

    def done(self, batch: list[Taken]) -> None:
        for taken in batch:
            self.in_progress.discard(taken.relative)

    def _escapes(self, path) -> bool:
        """A symlink whose target is outside the inbox: the same rule as ``classify`` (reported, never read)."""
        if not os.path.islink(path):
            return False
        target = os.path.realpath(path)
        return os.path.commonpath([self._real_inbox, target]) != self._real_inbox
