"""Deciding when a file in the inbox is complete: a pure, clock-injected tracker.

A scanner or a network copy writes a file in pieces over seconds, and
PollingObserver sends no "closed" events, so completeness is judged from
quiet time alone: a file is *stable* once it has had no events for
``settle`` seconds and its size and mtime have not changed between two
looks at least ``settle`` apart.  The tracker never sleeps and never reads
the clock itself, so tests drive it with a fake clock and fake ``stat``.
"""

from __future__ import annotations

import os
import stat as stat_module
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple


class StableFile(NamedTuple):
    """A file judged complete, with the size and mtime it was judged at."""

    path: Path
    size: int
    mtime_ns: int


@dataclass
class _Watch:
    signature: tuple[int, int] | None  # (size, mtime_ns) at the last look
    since: float  # when the signature (or last event) was last seen to change


class StabilityTracker:
    def __init__(
        self,
        settle: float,
        clock: Callable[[], float],
        stat: Callable[[Path], os.stat_result] = os.stat,
    ):
        self.settle = settle
        self.clock = clock
        self.stat = stat
        self._files: dict[Path, _Watch] = {}

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, path) -> bool:
        return Path(path) in self._files

    def seen(self, path: Path) -> None:
        """An event (or a scan) touched ``path``: restart its quiet period."""
        path = Path(path)
        # Re-insert so the dict stays ordered by ``since``: due() can stop at the first unsettled file.
        self._files.pop(path, None)
        self._files[path] = _Watch(self._signature(path), self.clock())

    def forget(self, path: Path) -> None:
        self._files.pop(Path(path), None)

    def due(self, limit: int | None = None) -> list[StableFile]:
        """Up to ``limit`` paths that are stable now, oldest first; they stop being tracked.

        Stable paths beyond ``limit`` stay tracked (and stay due), which is how
        the daemon applies backpressure.  Vanished or non-regular paths are dropped.
        """
        now = self.clock()
        stable = []
        for path, watch in list(self._files.items()):
            if limit is not None and len(stable) >= limit:
                break
            if now - watch.since < self.settle:
                break  # ordered by since: every later file is newer still
            signature = self._signature(path)
            if signature is None:
                del self._files[path]  # gone, or a directory/FIFO: nothing to take
            elif signature != watch.signature:
                del self._files[path]
                self._files[path] = _Watch(signature, now)  # still growing: look again later
            else:
                del self._files[path]
                stable.append(StableFile(path, *signature))
        return stable

    def next_deadline(self) -> float | None:
        """The clock time when the next file could become stable (for the caller's sleep)."""
        if not self._files:
            return None
        return next(iter(self._files.values())).since + self.settle

    def _signature(self, path: Path) -> tuple[int, int] | None:
        try:
            info = self.stat(path)
        except OSError:
            return None
        if not stat_module.S_ISREG(info.st_mode):
            return None
        return (info.st_size, info.st_mtime_ns)
