"""The one atomic write: a temporary sibling, fsync, permissions from the umask, rename, fsync of the folder.

A reader never sees a file half done, and after a crash the file is either
the old one or the new one.  :func:`replacing` hands out the temporary path
for writers that need a name (a model, a workbook, a stream);
:func:`write_bytes_atomic` and :func:`write_text_atomic` are the short forms.
:class:`FolderLock` makes a read-then-write of files in one folder (read the
old file, write the new one) one process's at a time.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


@contextmanager
def replacing(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it becomes ``path``.

    ``suffix`` is the temporary's ending (Keras picks the format of ``model.save`` by it).
    On an error the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        publish(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def publish(temporary: Path, path: Path) -> None:
    """A finished temporary file (in ``path``'s folder) becomes ``path``: fsync, umask permissions, rename, fsync."""
    _sync_file(temporary)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; reports are for others to read
    os.replace(temporary, path)
    fsync_dir(Path(path).parent)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with replacing(path) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class FolderLock:
    """An exclusive ``flock`` on a folder itself, held for a ``with`` block; a second holder waits for it.

    On the folder, not on a lock file in it: nothing is left beside the
    files, and the kernel drops it when the process dies (even on kill -9),
    so a killed writer blocks no one.  The folder is opened here, so an
    ``OSError`` (no such folder, no permission) comes before the block and
    the caller can name what it was locking.  ``on_busy`` is called once if
    another holder makes this one wait.
    """

    def __init__(self, folder: Path, on_busy: Callable[[], None] | None = None):
        self.fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.on_busy = on_busy

    def __enter__(self) -> "FolderLock":
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.on_busy is not None:
                self.on_busy()
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> bool:
        os.close(self.fd)  # closing the last descriptor of the open file drops the lock
        return False
