"""Step 3 of a batch: move reported inputs out of the inbox, and record where each went.

A move that fails (a full disk, a read-only ``processed/``, a permission) is
logged and retried later; it never blocks classification or a restart.
The target folder is chosen when the move happens, from the daemon's
current options, so fixing ``--processed`` after a failure is enough.
A file is moved only if it is still the file that was classified (same
size, mtime and ctime): a new file under the same name is left for the daemon.

What moves is the inbox entry itself, whatever it is: a symlink is moved as
a link (never its target), a FIFO or a device node as itself (never opened).
The log counts only files that really moved; a decided file found gone or
replaced is named, not counted.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import stat
from pathlib import Path

from batchclf.atomic import write_text_atomic
from batchclf.watch.journal import FAILED_MOVE, Journal, PendingMove

log = logging.getLogger("batchclf.watch")

RETRY_EVERY = 30.0  # seconds between retries of failed moves while no batch comes

GONE, REPLACED = "gone", "replaced"  # why a decided file was not moved (and never will be)


class Mover:
    def __init__(self, journal: Journal, inbox: Path, processed_dir: Path, failed_dir: Path):
        self.journal = journal
        self.inbox, self.processed_dir, self.failed_dir = inbox, processed_dir, failed_dir
        self._made_dirs: set[str] = set()
        self._failing: set[int] = set()  # ids whose last move failed: logged once, retried quietly
        self.emptied: set[str] = set()  # inbox folders files were moved out of (the pruner looks at them later)

    @property
    def failing(self) -> int:
        return len(self._failing)

    def take_emptied(self) -> set[str]:
        """The inbox folders files moved out of since the last call."""
        emptied, self.emptied = self.emptied, set()
        return emptied

    def move_decided(self) -> None:
        done, moved, to_failed = [], 0, 0
        for pending in self.journal.pending_moves():
            outcome = self._move(pending)
            if outcome is False:
                continue
            self._failing.discard(pending.id)
            if outcome in (GONE, REPLACED):
                done.append((pending.id, None))
                if outcome == REPLACED:
                    log.info("%s: not moved: the file there is not the one reported (changed or replaced since)", pending.path)
                continue
            done.append((pending.id, outcome))
            moved += 1
            to_failed += pending.kind == FAILED_MOVE
        if done:
            self.journal.mark_moved(done)
        if moved:
            log.info("moved %d files (%d of them to %s)", moved, to_failed, self.failed_dir)

    def _move(self, pending: PendingMove) -> str | bool:
        """Where the file went; GONE or REPLACED when it is not there to move; False when the move failed (retried later)."""
        source = os.path.join(self.inbox, pending.real_path)
        try:
            entry = os.lstat(source)
            # A link was judged by what it leads to (intake follows it); the link is what moves.
            info = os.stat(source) if stat.S_ISLNK(entry.st_mode) else entry
        except FileNotFoundError:
            # Moved before a crash, or removed by the user; a link whose target went is no longer the entry reported.
            return REPLACED if os.path.lexists(source) else GONE
        except OSError as exc:
            return self._failed(pending, f"cannot look at {source}: {exc.strerror}")
        if (info.st_size, info.st_mtime_ns) != (pending.size, pending.mtime_ns) or (
            pending.ctime_ns is not None and info.st_ctime_ns != pending.ctime_ns
        ):
            # Moved before a crash, and a new file arrived under the same name (even with the same
            # size and mtime: its ctime, which no one can set, differs): not ours to move.
            return REPLACED
        target = self._target(pending)
        try:
            final = unique_path(target)
            parent = os.path.dirname(final)
            if parent not in self._made_dirs:
                make_dirs(parent)
                self._made_dirs.add(parent)
            try:
                os.rename(source, final)  # renames the entry: a link stays a link, a FIFO is never opened
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                move_across(source, final, entry.st_mode)  # processed/ on another filesystem
        except OSError as exc:
            self._made_dirs.discard(os.path.dirname(target))
            return self._failed(pending, f"cannot move {pending.path} to {target}: {exc.strerror or exc}")
        if pending.kind == FAILED_MOVE:
            self._write_reason(Path(final), pending)
        self.emptied.add(os.path.dirname(source))
        log.debug("moved %s -> %s", pending.path, final)
        return final

    def _target(self, pending: PendingMove) -> str:
        if pending.kind is None:  # a journal from before move_kind: its planned absolute target
            return pending.planned
        folder = self.failed_dir if pending.kind == FAILED_MOVE else self.processed_dir
        return os.path.join(folder, pending.day, pending.real_path)  # the moved file keeps its own name

    def _failed(self, pending: PendingMove, message: str) -> bool:
        if pending.id not in self._failing:
            log.warning("%s; it stays in the inbox and the move is retried", message)
            self._failing.add(pending.id)
        return False

    def _write_reason(self, moved_to: Path, pending: PendingMove) -> None:
        reason, sha256, day = self.journal.reason_of(pending.id)
        try:
            write_text_atomic(
                moved_to.with_name(moved_to.name + ".reason.json"),
                json.dumps({"file": pending.path, "error": reason, "sha256": sha256, "day": day, "moved_to": str(moved_to)}, indent=2)
                + "\n",
            )
        except OSError as exc:
            log.warning("cannot write the reason file beside %s: %s", moved_to, exc.strerror or exc)


def move_across(source: str, final: str, mode: int) -> None:
    """Move to another filesystem: a copy, so only what can be copied without reading a FIFO or a device.

    ``shutil.move`` copies a link as a link and a regular file's bytes; it
    would read a device node for ever (``/dev/zero``), so those stay.
    """
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OSError(errno.EXDEV, "not a regular file, so not copied to another filesystem")
    shutil.move(source, final)


def make_dirs(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)`` without recursion: an inbox may be nested deeper than Python's stack."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise


def unique_path(path: str) -> str:
    """``path``, or ``name-1.ext``, ``name-2.ext``... if taken: a move never overwrites.

    Strings, not Paths: this runs once per file moved.
    """
    if not os.path.lexists(path):
        return path
    stem, suffix = os.path.splitext(path)
    for n in range(1, 100000):
        candidate = f"{stem}-{n}{suffix}"
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(errno.EEXIST, f"no free name for {path}")
