"""One daemon per inbox: exclusive ``flock``s that the kernel drops when the process dies, even on kill -9.

Two locks, because neither place alone holds both promises:

- ``<out>/.watch-<key>.lock``, named after the inbox, survives the inbox
  being deleted and recreated under the daemon (a lock inside the inbox
  would go with the folder, and let a second daemon start on the new one);
- ``<inbox>/.batchclf-watch.lock`` refuses a second daemon given another
  ``--out``; it goes with the folder, so the daemon takes it again on the
  new folder (:meth:`InboxLock.retake_in_inbox`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from batchclf.errors import InboxLockedError

LOCK_NAME = ".batchclf-watch.lock"  # the lock inside the inbox


def lock_path(inbox: Path, out_dir: Path) -> Path:
    """``<out>/.watch-<sha256 of the absolute inbox path, 16 hex digits>.lock``: the inbox's lock that outlives the folder."""
    key = hashlib.sha256(os.fsencode(Path(inbox).resolve())).hexdigest()[:16]
    return Path(out_dir).resolve() / f".watch-{key}.lock"


def recorded_pid(text: str) -> int | None:
    """The pid a lock file names (its first line; the second is the inbox), or None."""
    try:
        return int(text.split("\n", 1)[0])
    except ValueError:
        return None


class InboxLock:
    def __init__(self, inbox: Path, out_dir: Path):
        self.inbox = Path(inbox).resolve()
        self.path = lock_path(inbox, out_dir)
        self._out_fd: int | None = None
        self._inbox_fd: int | None = None

    def acquire(self) -> "InboxLock":
        self._out_fd = self._take(self.path)
        try:
            self._inbox_fd = self._take(self.inbox / LOCK_NAME)
        except InboxLockedError:
            self.release()
            raise
        return self

    def retake_in_inbox(self) -> None:
        """Lock the folder that now stands at the inbox path (the old one went, and its lock with it).

        Raises :class:`InboxLockedError` when another daemon got there first.
        """
        _unlock(self._inbox_fd)
        self._inbox_fd = None
        self._inbox_fd = self._take(self.inbox / LOCK_NAME)

    def release(self) -> None:
        _unlock(self._inbox_fd)
        _unlock(self._out_fd)
        self._inbox_fd = self._out_fd = None

    def _take(self, path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = recorded_pid(os.pread(fd, 32, 0).decode(errors="replace")) or "another process"
            os.close(fd)
            raise InboxLockedError(f"inbox {self.inbox} is already watched by pid {holder}") from None
        os.ftruncate(fd, 0)
        # The inbox path tells an operator looking at the output folder which inbox a lock file belongs to.
        os.pwrite(fd, f"{os.getpid()}\n{self.inbox}\n".encode(errors="surrogateescape"), 0)
        return fd

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def _unlock(fd: int | None) -> None:
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
