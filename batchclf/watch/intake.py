"""Intake: which inbox paths are candidate inputs, finding them, and taking the stable ones.

The watcher only finds files and hands on those that are stable and new to
the journal; everything after that (decoding, labelling, reporting, moving)
happens in later stages.  "New" is decided by identity and ctime (see
:class:`~batchclf.watch.journal.Known`): a known identity under a new ctime
is taken, and :meth:`Intake.partition_unchanged` drops it once its sha256
shows the same bytes.

Two decisions are made here, once for every entry, so that later stages
only ever see a file to read or a refusal to report:

- at taking, an entry that must not be read is marked with why: a symlink
  leading outside the inbox, or anything that is not a regular file (a FIFO,
  a socket, a device, a link to one).  It goes the usual way (one ``failed``
  row, moved to ``failed/``) but is never opened;
- after preparing, a file that failed the way a file still being written
  fails is held and watched again (:mod:`batchclf.watch.arrival`) instead
  of being reported.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from batchclf.scan.discovery import display_name, is_ignored
from batchclf.scan.prepare import Prepared
from batchclf.watch.arrival import HOLD, Arrivals
from batchclf.watch.journal import Journal, Known
from batchclf.watch.lock import LOCK_NAME
from batchclf.watch.stability import StabilityTracker, StableFile
from batchclf.jobs.inputs import real, within

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
    refused: str | None = None  # why it is not read at all (not a regular file): reported with this reason
    source: bytes | None = None  # the real inbox-relative name, when ``relative`` had to escape bytes
    ctime_ns: int | None = None  # looked up before the bytes are read: a change after it shows as a newer ctime
    previous: Known | None = None  # the journal's record of this identity, under another ctime
    arrived: float | None = None  # when it was last known to change (clock): where its latency starts
    prepared: list[Prepared] = field(default_factory=list)

    @property
    def sha256(self) -> str | None:
        return next((p.row["sha256"] for p in self.prepared if p.row.get("sha256")), None)


class Intake:
    def __init__(self, inbox: Path, own_dirs: tuple[Path, ...], tracker: StabilityTracker, journal: Journal, clock):
        self.inbox, self.tracker, self.journal, self.clock = inbox, tracker, journal, clock
        self._prefix = os.fspath(inbox) + os.sep
        self._real_inbox = real(inbox)
        self._own_dirs = tuple(os.fspath(p) for p in own_dirs)
        self.in_progress: set[str] = set()
        self.arrivals = Arrivals(tracker.settle)

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
        arrived = {}
        for path, size, mtime_ns in stable:
            arrived[path] = self.tracker.arrived(path)
            relative = self.relative(path)
            info = self._stat_if_unchanged(path, size, mtime_ns) if relative is not None else None
            if info is not None:
                candidates.append(((relative, size, mtime_ns), info, path))
        latest = self.journal.latest_of([identity for identity, _, _ in candidates])
        taken, now = [], self.clock()
        for (relative, size, mtime_ns), info, path in candidates:
            previous = latest.get((relative, size, mtime_ns))
            if _same_file(previous, info.st_ctime_ns):
                continue
            self.in_progress.add(relative)
            refused = not_regular(info.st_mode)
            taken.append(
                Taken(relative, Path(path), size, mtime_ns, now, escaped=refused is None and self._escapes(path),
                      refused=refused, source=self._source(path, relative), ctime_ns=info.st_ctime_ns, previous=previous,
                      arrived=arrived.get(path))
            )
        return taken

    def hold_if_arriving(self, taken: Taken) -> bool:
        """Whether a prepared file is held as still arriving (then it is watched again, not reported).

        See :mod:`batchclf.watch.arrival`.  Events for a file in progress are
        not heeded, so a file that changed while it was read is looked at
        again after the usual settle; one that did not must stay still for
        the whole hold.
        """
        identity = (taken.size, taken.mtime_ns, taken.ctime_ns)
        if self.arrivals.verdict(taken.relative, identity, taken.prepared) != HOLD:
            return False
        self.in_progress.discard(taken.relative)
        if self._stat_if_unchanged(taken.path, taken.size, taken.mtime_ns, taken.ctime_ns) is not None:
            self.tracker.hold(taken.path, self.arrivals.hold)
        elif not os.path.lexists(taken.path):
            self.arrivals.forget(taken.relative)
            log.info("%s: gone before it was complete; not reported", taken.relative)
            return True
        reason = next(p.row["error"] for p in taken.prepared if p.row.get("error"))
        log.info("waiting for %s: %s (still being written?); read again once it changes and is still for %gs, "
                 "reported as failed if it stays as it is for %gs", taken.relative, reason, self.tracker.settle, self.arrivals.hold)
        return True

    def forget(self, path) -> None:
        """``path`` left the inbox (deleted, or moved away): stop watching it and holding it."""
        self.tracker.forget(Path(path))
        relative = self.relative(path)
        if relative is not None:
            self.arrivals.forget(relative)

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

    def _stat_if_unchanged(self, path, size: int, mtime_ns: int, ctime_ns: int | None = None) -> os.stat_result | None:
        """The file's stat, or None when it is gone or changed since it was judged stable (then it is watched again).

        The tracker's stable files carry size and mtime only, so this is one
        more look; it comes before the bytes are read, which is what makes
        the ctime safe to trust later.  Never opens the file: a FIFO is safe.
        """
        try:
            info = os.stat(path)  # follows a file link, like the scan: its target is what gets read
        except OSError:
            return None
        if (info.st_size, info.st_mtime_ns) != (size, mtime_ns) or ctime_ns not in (None, info.st_ctime_ns):
            self.tracker.seen(Path(path))
            return None
        return info

    def _escapes(self, path) -> bool:
        """A symlink whose target is outside the inbox: the same rule as ``classify`` (reported, never read)."""
        if not os.path.islink(path):
            return False
        return not within(self._real_inbox, real(path))


def not_regular(mode: int) -> str | None:
    """Why an entry that is not a regular file is not read (what a link leads to, for a link); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}.get(
        stat.S_IFMT(mode), "not a file")
    return f"not a regular file ({kind}); not read"


def _same_file(known: Known | None, ctime_ns: int) -> bool:
    """The journal's record is of this very file: same identity and the same ctime (so it need not be read)."""
    return known is not None and known.ctime_ns == ctime_ns
