"""Retention: old day folders out of ``processed/`` and ``failed/``, and emptied folders out of the inbox.

Day folders: only the direct children of the processed and failed folders
named ``YYYY-MM-DD`` (a real date) that are folders (not links) and whose
date is more than ``keep`` days before today (UTC, as the daemon names
them).  Nothing else is ever removed: not a folder of another name, not a
folder of that name anywhere else, not one that is or holds the inbox, the
jobs folder (journal, reports) or the other of the two folders, and not a
day that still has a file waiting to be moved into it.  With no ``keep``
(the default) nothing goes.

Inbox folders: a sub-folder of the inbox from which the daemon moved files
is removed once it is empty and nothing has changed in it for a grace
period (a scanner that writes one file a minute into it must not lose its
folder between two files); ``rmdir`` refuses a folder that is not empty,
so one that received a file meanwhile always stays.  Its parents follow
when that leaves them empty.  The inbox itself never goes.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from batchclf.errors import SettingsError
from batchclf.jobs.inputs import day_of, inside

log = logging.getLogger("batchclf.watch")

KEEP_TEXT = re.compile(r"\A\s*(\d+)\s*([dw]?)\s*\Z", re.IGNORECASE)


def parse_keep(text, where: str = "keep") -> int | None:
    """``30d``, ``12w`` or ``30`` (days) -> days; None, ``""``, ``forever`` -> None (keep everything).

    At least one day: today's folder is never a candidate, nor yesterday's
    (files decided just before midnight are still being moved into it).
    """
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "forever", "off")):
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        days = text
    else:
        match = KEEP_TEXT.match(str(text))
        if not match:
            raise SettingsError(f"{where}: expected days like 30d or 12w (or forever), got {text!r}")
        days = int(match.group(1)) * (7 if match.group(2).lower() == "w" else 1)
    if days < 1:
        raise SettingsError(f"{where}: must be at least 1d, got {text!r}")
    return days


def today_utc() -> date:
    return datetime.now(timezone.utc).date()


@dataclass(frozen=True)
class DayFolder:
    path: Path
    day: date
    kind: str  # "processed" or "failed"
    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Plan:
    """What retention would remove now (the dry run)."""

    folders: tuple[DayFolder, ...]
    measured: bool  # files and bytes were counted

    @property
    def files(self) -> int:
        return sum(f.files for f in self.folders)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.folders)

    def line(self) -> str:
        """One line for ``service status``."""
        if not self.folders:
            return "retention: nothing to remove"
        days = sorted(f.day for f in self.folders)
        size = f", {_count(self.files, 'file')}, {self.bytes / 1e6:.1f} MB" if self.measured else ""
        return f"retention: {_count(len(self.folders), 'day folder')} would go ({days[0]} to {days[-1]}{size})"


@dataclass(frozen=True)
class RetentionPolicy:
    processed_dir: Path
    failed_dir: Path
    keep_processed: int | None  # days; None: keep everything
    keep_failed: int | None
    protected: tuple[Path, ...] = ()  # the inbox, the jobs folder: never removed, never a folder holding them

    @property
    def active(self) -> bool:
        return self.keep_processed is not None or self.keep_failed is not None


def plan(policy: RetentionPolicy, today: date | None = None, skip_days: Iterable[str] = (), measure: bool = True) -> Plan:
    """The day folders older than their keep period, oldest first; ``measure`` counts their files and bytes."""
    today = today or today_utc()
    skip = set(skip_days)
    roots = {"processed": (policy.processed_dir, policy.keep_processed), "failed": (policy.failed_dir, policy.keep_failed)}
    others = {kind: Path(os.path.abspath(root)) for kind, (root, _) in roots.items()}
    found = []
    for kind, (root, keep) in roots.items():
        if keep is None:
            continue
        root = Path(os.path.abspath(root))
        try:
            entries = list(os.scandir(root))
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("retention: cannot list %s: %s", root, exc.strerror or exc)
            continue
        protected = list(policy.protected) + [p for k, p in others.items() if k != kind]
        for entry in entries:
            day = day_of(entry.name)
            if day is None or (today - day).days <= keep or entry.name in skip:
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue  # a link or a file of that name: not a folder we made
            path = Path(entry.path)
            if any(inside(path, p) for p in protected):  # the one containment rule (jobs.inputs)
                log.warning("retention: %s holds the inbox, the jobs folder or another daemon folder: kept", path)
                continue
            files, size = _measure(path) if measure else (0, 0)
            found.append(DayFolder(path, day, kind, files, size))
    return Plan(tuple(sorted(found, key=lambda f: (f.day, f.kind))), measure)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _measure(path: Path) -> tuple[int, int]:
    files = size = 0
    for entry_path, info in _walk(os.fspath(path)):
        if not stat.S_ISDIR(info.st_mode):
            files += 1
            size += info.st_size
    return files, size


def _walk(top: str):
    """``(path, lstat)`` of everything under ``top``, iteratively (no depth limit), never following links."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    yield entry.path, info
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue


def remove_tree(top: str, should_stop: Callable[[], bool] = lambda: False) -> tuple[int, int, bool]:
    """Remove a folder and everything in it: ``(files, bytes, complete)``.

    Iterative (a tree of any depth), never following a link (a link is
    unlinked, its target untouched; a folder is entered only after ``lstat``
    says it is one).  ``should_stop`` is asked between folders; a stopped
    removal leaves the rest for the next run (the folder is still old).
    """
    files = size = 0
    stack: list[tuple[str, bool]] = [(top, False)]
    while stack:
        folder, emptied = stack.pop()
        if emptied:
            os.rmdir(folder)
            continue
        if should_stop():
            return files, size, False
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(folder)  # became a link or a file since it was listed: remove the entry, not its target
            continue
        stack.append((folder, True))
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, False))
                    continue
                try:
                    size += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    pass
                os.unlink(entry.path)
                files += 1
    return files, size, True


class Retention:
    """Runs the removal in a thread (a month's folder can take longer than the watchdog allows), at most one at a time.

    ``sweep``, when given, runs in the same thread after the day folders, at
    start and daily like them, with the thread's stop check: the daemon's
    look at inbox folders earlier runs emptied, which in a huge inbox tree
    would otherwise hold back the first row.
    """

    def __init__(self, policy: RetentionPolicy, on_removed: Callable[[DayFolder, int, int], None] | None = None,
                 sweep: Callable[[Callable[[], bool]], None] | None = None):
        self.policy = policy
        self.on_removed = on_removed
        self.sweep = sweep
        self.last_day: date | None = None
        self._thread: threading.Thread | None = None
        self._abort = threading.Event()

    def due(self, today: date | None = None) -> bool:
        """At start, then once each new (UTC) day."""
        return (self.policy.active or self.sweep is not None) and (today or today_utc()) != self.last_day and not self.running

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, skip_days: Iterable[str] = (), today: date | None = None) -> None:
        """Plan and remove in the background; ``skip_days``: days that still have files to be moved into them."""
        today = today or today_utc()
        self.last_day = today
        self._abort.clear()
        self._thread = threading.Thread(target=self._run, args=(today, frozenset(skip_days)), name="batchclf-retention")
        self._thread.start()

    def _run(self, today: date, skip: frozenset[str]) -> None:
        self._remove_old_days(today, skip)
        if self.sweep is not None and not self._abort.is_set():
            try:
                self.sweep(self._abort.is_set)
            except Exception:  # as below: logged, never the daemon's end
                log.exception("sweeping emptied inbox folders failed")

    def _remove_old_days(self, today: date, skip: frozenset[str]) -> None:
        try:
            for folder in plan(self.policy, today, skip, measure=False).folders:
                if self._abort.is_set():
                    return
                keep = self.policy.keep_processed if folder.kind == "processed" else self.policy.keep_failed
                try:
                    files, size, complete = remove_tree(os.fspath(folder.path), self._abort.is_set)
                except OSError as exc:
                    log.warning("retention: cannot remove %s: %s", folder.path, exc.strerror or exc)
                    continue
                if complete:
                    log.info("retention: removed %s (%d files, %.1f MB): older than %d days", folder.path, files,
                             size / 1e6, keep)
                if self.on_removed is not None:
                    self.on_removed(folder, files, size)
        except Exception:  # a bug here must not take the daemon down; it is logged with its traceback
            log.exception("retention failed")

    def finish(self, abort: bool) -> None:
        """Wait for a removal in progress; ``abort`` stops it between folders (the rest goes next time)."""
        if self._thread is None:
            return
        if abort:
            self._abort.set()
        self._thread.join()
        self._thread = None


@dataclass
class InboxPruner:
    """Removes inbox sub-folders the daemon emptied, once nothing changed in them for ``grace`` seconds.

    Used by the daemon's loop (folders it just emptied) and by the retention
    thread (folders earlier runs emptied): the candidates are taken and
    given back under a lock, and the slow part (lstat, rmdir) runs outside it.
    """

    inbox: Path
    grace: float = 60.0
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    _candidates: dict[str, float] = field(default_factory=dict)  # folder -> when a file last moved out of it
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def emptied(self, folders: Iterable[str], due_now: bool = False) -> None:
        """Folders files were just moved out of (absolute); ``due_now``: moved out long ago (a previous run)."""
        inbox = os.fspath(self.inbox)
        now = float("-inf") if due_now else self.clock()
        mine = {folder: now for folder in folders if folder != inbox and folder.startswith(inbox + os.sep)}
        with self._lock:
            self._candidates.update(mine)

    def __len__(self) -> int:
        return len(self._candidates)

    def _take_due(self, now: float) -> list[str]:
        with self._lock:
            due = [folder for folder, since in self._candidates.items() if now - since >= self.grace]
            for folder in due:
                del self._candidates[folder]
        return due

    def _later(self, folder: str, now: float) -> None:
        with self._lock:
            self._candidates.setdefault(folder, now)

    def prune(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Remove what is due; how many folders went.  ``should_stop`` is asked between folders (the rest wait)."""
        inbox = os.fspath(self.inbox)
        now = self.clock()
        removed = 0
        due = self._take_due(now)
        for index, folder in enumerate(due):
            if should_stop():
                for rest in due[index:]:
                    self._later(rest, float("-inf"))  # still due: the next prune takes them
                break
            current, info = folder, _lstat(folder)
            while current != inbox and current.startswith(inbox + os.sep):
                if info is None or not stat.S_ISDIR(info.st_mode):
                    break  # gone, or no longer a folder
                if self.wall_clock() - info.st_mtime < self.grace:
                    self._later(current, now)  # changed recently (perhaps a file came and went): later
                    break
                parent = os.path.dirname(current)
                parent_info = _lstat(parent)  # before our rmdir changes its mtime
                try:
                    os.rmdir(current)  # refuses a folder that is not empty: one that received a file stays
                except OSError:
                    break
                removed += 1
                log.debug("removed the emptied inbox folder %s", current)
                current, info = parent, parent_info
        return removed


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None

