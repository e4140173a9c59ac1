"""One daemon per inbox: an exclusive ``flock`` that the kernel drops when the process dies, even on kill -9."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from batchclf.errors import InboxLockedError

LOCK_NAME = ".batchclf-watch.lock"


class InboxLock:
    def __init__(self, inbox: Path):
        self.path = Path(inbox) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "InboxLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InboxLockedError(f"inbox {self.path.parent} is already watched by pid {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
