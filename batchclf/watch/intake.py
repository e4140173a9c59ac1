"""Intake: which inbox paths are candidate inputs, finding them, and taking the stable ones.

The watcher only finds files and hands on those that are stable and new to
the journal; everything after that (decoding, labelling, reporting, moving)
happens in later stages.  "New" is decided by identity and ctime (see
:class:`~batchclf.watch.journal.Known`): a known identity under a new ctime
is taken, and :meth:`Intake.partition_unchanged` drops it once its sha256
shows the same bytes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from batchclf.scan.discovery import display_name, is_ignored
from batchclf.scan.prepare import Prepared
from batchclf.watch.journal import Journal, Known
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
    ctime_ns: int | None = None  # looked up before the bytes are read: a change after it shows as a newer ctime
    previous: Known | None = None  # the journal's record of this identity, under another ctime
    prepared: list[Prepared] = field(default_factory=list)

    @property
    def sha256(self) -> str | None:
        return next((p.row["sha256"] for p in self.prepared if p.row.get("sha256")), None)


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
                found.append(((relative, info.st_size, info.st_mtime_ns), info.st_ctime_ns, entry.path))
            stack.extend(reversed(subfolders))
            latest = self.journal.latest_of([identity for identity, _, _ in found])
            for identity, ctime_ns, path in found:
                if not _same_file(latest.get(identity), ctime_ns):
                    self.tracker.seen(Path(path))

    def take(self, stable: list[StableFile]) -> list[Taken]:
        """The stable files new to the journal, marked in progress until their batch is done."""
        candidates = []
        for path, size, mtime_ns in stable:
            relative = self.relative(path)
            ctime_ns = self._ctime_if_unchanged(path, size, mtime_ns) if relative is not None else None
            if ctime_ns is not None:
                candidates.append(((relative, size, mtime_ns), ctime_ns, path))
        latest = self.journal.latest_of([identity for identity, _, _ in candidates])
        taken, now = [], self.clock()
        for (relative, size, mtime_ns), ctime_ns, path in candidates:
            previous = latest.get((relative, size, mtime_ns))
            if _same_file(previous, ctime_ns):
                continue
            self.in_progress.add(relative)
            taken.append(
                Taken(relative, Path(path), size, mtime_ns, now, escaped=self._escapes(path), source=self._source(path, relative),
                      ctime_ns=ctime_ns, previous=previous)
            )
        return taken

    def partition_unchanged(self, batch: list[Taken]) -> tuple[list[Taken], list[Taken]]:
        """``(new, unchanged)``: unchanged files hold the bytes the journal has for their identity (rewritten or touched)."""
        new, unchanged = [], []
        for taken in batch:
            same = taken.previous is not None and taken.previous.sha256 is not None and taken.sha256 == taken.previous.sha256
            (unchanged if same else new).append(taken)
        return new, unchanged

    def done(self, batch: list[Taken]) -> None:
        for taken in batch:
            self.in_progress.discard(taken.relative)

    def _ctime_if_unchanged(self, path, size: int, mtime_ns: int) -> int | None:
        """The file's ctime, or None when it is gone or changed since it was judged stable (then it is watched again).

        The tracker's stable files carry size and mtime only, so this is one
        more look; it comes before the bytes are read, which is what makes
        the ctime safe to trust later.
        """
        try:
            info = os.stat(path)  # follows a file link, like the scan: its target is what gets read
        except OSError:
            return None
        if (info.st_size, info.st_mtime_ns) != (size, mtime_ns):
            self.tracker.seen(Path(path))
            return None
        return info.st_ctime_ns

    def _escapes(self, path) -> bool:
        """A symlink whose target is outside the inbox: the same rule as ``classify`` (reported, never read)."""
        if not os.path.islink(path):
            return False
        target = os.path.realpath(path)
        return os.path.commonpath([self._real_inbox, target]) != self._real_inbox


def _same_file(known: Known | None, ctime_ns: int) -> bool:
    """The journal's record is of this very file: same identity and the same ctime (so it need not be read)."""
    return known is not None and known.ctime_ns == ctime_ns
