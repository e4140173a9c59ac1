"""Watching the inbox with watchdog: native (inotify) observer, or polling on network filesystems.

Events only *nominate* paths; the stability tracker decides when a file is
complete.  Pattern matching is done here by suffix-free name rules (as in
``classify``), since watchdog 7 changed its glob syntax.

An observer watches a folder, not a path: an inbox deleted and made again
(or renamed away and replaced) is a new folder the old observer never hears
of.  :class:`InboxWatch` notices that and starts a new observer.
"""

from __future__ import annotations

import os
import queue
import stat as stat_module
import threading
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

# inotify sees nothing of changes made by other machines on these.
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "davfs", "sshfs", "lustre", "gpfs", "fuse"}


def filesystem_type(path: Path, mounts_file: Path = Path("/proc/self/mounts")) -> str:
    """The type of the filesystem holding ``path``, from the mount table (longest mount-point prefix).

    /proc/self/mounts, not /proc/mounts: the unit's ProcSubset=pid hides the latter, not the process's own.
    """
    target = os.path.realpath(path)
    best, best_type = "", "unknown"
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return best_type
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        if (target == mount_point or target.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) >= len(best):
            best, best_type = mount_point, parts[2]
    return best_type


def is_network_filesystem(fs_type: str) -> bool:
    return fs_type in NETWORK_FILESYSTEMS or fs_type.startswith("fuse.") or fs_type.startswith("nfs")


class _Handler(FileSystemEventHandler):
    def __init__(self, events: "queue.Queue", root: str, root_lost: threading.Event):
        self.events, self.root, self.root_lost = events, root, root_lost

    def on_any_event(self, event) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        if kind in ("deleted", "moved") and os.fsdecode(event.src_path) == self.root:
            # watchdog stops watching a folder that went; a new one may already stand at its path
            # (perhaps even with its inode number), which only this event tells apart.
            self.root_lost.set()
        if kind == "moved":
            self.events.put(("gone", os.fsdecode(event.src_path), event.is_directory))
            self.events.put(("seen", os.fsdecode(event.dest_path), event.is_directory))
        elif kind == "deleted":
            self.events.put(("gone", os.fsdecode(event.src_path), event.is_directory))
        else:  # created, modified, closed
            self.events.put(("seen", os.fsdecode(event.src_path), event.is_directory))


def start_observer(inbox: Path, events: "queue.Queue", polling: bool, poll_interval: float, root_lost: threading.Event):
    """Start a watchdog observer on ``inbox``; returns ``(observer, description)``; ``root_lost`` is set if the inbox goes."""
    fs_type = filesystem_type(inbox)
    if polling or is_network_filesystem(fs_type):
        observer = PollingObserver(timeout=poll_interval)
        why = "--polling" if polling else f"network filesystem {fs_type}"
        description = f"PollingObserver every {poll_interval:g}s ({why})"
    else:
        observer = Observer()
        description = f"{observer.__class__.__name__} (native, filesystem {fs_type})"
    observer.schedule(_Handler(events, str(inbox), root_lost), str(inbox), recursive=True)
    observer.daemon = True
    observer.start()
    return observer, description


GONE, BACK = "gone", "back"


class InboxWatch:
    """The observer on the inbox, replaced when a new folder takes the inbox's place.

    :meth:`check` compares the folder at the inbox path, by ``(st_dev,
    st_ino)``, with the one being watched, and heeds the observer's own event
    that its folder went.  Cheap enough to call every second.
    """

    def __init__(self, inbox: Path, events: "queue.Queue", polling: bool, poll_interval: float):
        self.inbox, self.events, self.polling, self.poll_interval = inbox, events, polling, poll_interval
        self.description = ""
        self._observer = None
        self._folder: tuple[int, int] | None = None
        self._lost = threading.Event()

    @property
    def watching(self) -> bool:
        return self._observer is not None

    def start(self) -> str:
        """Watch the folder now at the inbox path; returns how (for the log)."""
        self._folder = folder_identity(self.inbox)
        self._lost.clear()
        self._observer, self.description = start_observer(self.inbox, self.events, self.polling, self.poll_interval, self._lost)
        return self.description

    def check(self) -> str | None:
        """GONE when the inbox has just vanished, BACK when a new folder is watched in its place, else None."""
        folder = folder_identity(self.inbox)
        if self.watching and folder == self._folder and not self._lost.is_set():
            return None
        was_watching = self.watching
        self.stop()
        if folder is not None:
            try:
                self.start()
                return BACK
            except OSError:  # gone again before the observer could start: the next check tries again
                self.stop()
        return GONE if was_watching else None

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None


def folder_identity(path: Path) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the folder at ``path``; None when there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat_module.S_ISDIR(info.st_mode) else None
