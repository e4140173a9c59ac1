"""Deciding when a file in the inbox is complete: a pure, clock-injected tracker.

A scanner or a network copy writes a file in pieces over seconds, and
PollingObserver sends no "closed" events, so completeness is judged from
quiet time alone: a file is *stable* once nothing has changed it for
``settle`` seconds and its size and mtime are the same at two looks, the
second at least ``settle`` after the quiet period began.  The tracker never
sleeps and never reads a clock itself, so tests drive it with fake clocks
and a fake ``stat``.

When the quiet period began: by default, when we last heard of the file
(an event or a scan).  With ``wall_clock`` (local filesystems, where the
kernel stamps ctime with this machine's own clock), at the file's ctime if
that is earlier: the kernel updates ctime on every write, truncation,
rename and ``utime``, so it is the time of the last change of any kind.
That removes watchdog's event delay (inotify move pairing holds events for
half a second) from every file's latency, and lets files that were already
complete when the daemon started go at once.  On network filesystems the
server's clock stamps ctime, so it is not trusted there.

Any entry but a folder is tracked, FIFOs and devices included: the tracker
only ``stat``s (never opens) a path, and intake decides what to do with an
entry that is not a regular file.  A file may be *held* for longer than
``settle`` (:meth:`StabilityTracker.hold`, see :mod:`batchclf.watch.arrival`),
and a file that keeps changing for long is named once by
:meth:`StabilityTracker.newly_busy`, so the log can say what it waits for.
"""

from __future__ import annotations

import os
import stat as stat_module
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple


CTIME_TICK = 0.02  # seconds; a kernel tick is 1-10 ms


class StableFile(NamedTuple):
    """A file judged complete, with the size and mtime it was judged at."""

    path: Path
    size: int
    mtime_ns: int


@dataclass
class _Watch:
    signature: tuple[int, int] | None  # (size, mtime_ns) at the last look
    since: float  # when the file was last known to change (tracker clock)
    quiet: float | None = None  # how long it must stay still; None: settle
    changing_since: float | None = None  # when a look first found it changed (a writer at work)
    told: bool = False  # newly_busy named it already


class StabilityTracker:
    def __init__(
        self,
        settle: float,
        clock: Callable[[], float],
        stat: Callable[[Path], os.stat_result] = os.stat,
        wall_clock: Callable[[], float] | None = None,
    ):
        self.settle = settle
        self.clock = clock
        self.stat = stat
        self.wall_clock = wall_clock
        self._files: dict[Path, _Watch] = {}
        self._stable_since: dict[Path, float] = {}  # files just found due: when their final quiet period began

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, path) -> bool:
        return Path(path) in self._files

    def seen(self, path: Path) -> None:
        """An event (or a scan) touched ``path``: look at it again and restart its quiet period."""
        path = Path(path)
        previous = self._files.pop(path, None)
        info = self._stat(path)
        self._files[path] = self._rearmed(previous, _signature(info), info)

    def hold(self, path: Path, quiet: float) -> None:
        """Watch ``path`` again, due only after ``quiet`` seconds without a change (a change re-arms the usual settle)."""
        path = Path(path)
        self._files.pop(path, None)
        info = self._stat(path)
        self._files[path] = _Watch(_signature(info), self._quiet_since(info), quiet=max(quiet, self.settle))

    def forget(self, path: Path) -> None:
        self._files.pop(Path(path), None)

    def arrived(self, path: Path) -> float | None:
        """For a file :meth:`due` just returned: when it was last known to change (tracker clock), once.

        That is when it arrived complete (a rename, the end of a copy): the
        start of a file's latency.  The caller asks once per due file.
        """
        return self._stable_since.pop(Path(path), None)

    def due(self, limit: int | None = None) -> list[StableFile]:
        """Up to ``limit`` paths that are stable now, oldest first; they stop being tracked.

        Stable paths beyond ``limit`` stay tracked (and stay due), which is how
        the daemon applies backpressure.  Vanished paths and folders are dropped.
        """
        now = self.clock()
        stable = []
        for path, watch in list(self._files.items()):
            if limit is not None and len(stable) >= limit:
                break
            if now - watch.since < self._quiet(watch):
                continue
            info = self._stat(path)
            signature = _signature(info)
            del self._files[path]
            if signature is None:
                continue  # gone, or a folder: nothing to take
            if signature != watch.signature:
                self._files[path] = self._rearmed(watch, signature, info)  # still growing: look again later
            else:
                stable.append(StableFile(path, *signature))
                self._stable_since[path] = watch.since
        return stable

    def newly_busy(self, after: float) -> list[tuple[Path, float]]:
        """Files that have kept changing for ``after`` seconds or more, each named once: ``(path, seconds)``."""
        now = self.clock()
        busy = []
        for path, watch in self._files.items():
            if not watch.told and watch.changing_since is not None and now - watch.changing_since >= after:
                watch.told = True
                busy.append((path, now - watch.changing_since))
        return busy

    def next_deadline(self) -> float | None:
        """The clock time when the next file could become stable (for the caller's sleep)."""
        if not self._files:
            return None
        return min(watch.since + self._quiet(watch) for watch in self._files.values())

    def _quiet(self, watch: _Watch) -> float:
        return self.settle if watch.quiet is None else watch.quiet

    def _rearmed(self, previous: _Watch | None, signature, info) -> _Watch:
        """A fresh quiet period, remembering since when the file has been seen changing.

        A held file keeps its longer quiet period through an event that changed
        nothing (its writer closing it); a change brings back the usual settle.
        """
        if previous is None:
            return _Watch(signature, self._quiet_since(info))
        changed = signature != previous.signature
        changing_since = previous.changing_since
        if changing_since is None and changed:
            changing_since = self.clock()
        return _Watch(signature, self._quiet_since(info), quiet=None if changed else previous.quiet,
                      changing_since=changing_since, told=previous.told)

    def _stat(self, path: Path) -> os.stat_result | None:
        try:
            return self.stat(path)
        except OSError:
            return None

    def _quiet_since(self, info: os.stat_result | None) -> float:
        now = self.clock()
        if self.wall_clock is None or info is None:
            return now
        # A ctime in the future (a clock step) counts as now; the kernel stamps ctime from a
        # coarse clock, up to a tick behind: never start the quiet period earlier than the truth.
        return now - max(0.0, self.wall_clock() - info.st_ctime - CTIME_TICK)


def _signature(info: os.stat_result | None) -> tuple[int, int] | None:
    if info is None or stat_module.S_ISDIR(info.st_mode):
        return None
    return (info.st_size, info.st_mtime_ns)
