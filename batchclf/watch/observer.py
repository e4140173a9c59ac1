"""Watching the inbox with watchdog: native (inotify) observer, or polling on network filesystems.

Events only *nominate* paths; the stability tracker decides when a file is
complete.  Pattern matching is done here by suffix-free name rules (as in
``classify``), since watchdog 7 changed its glob syntax.
"""

from __future__ import annotations

import os
import queue
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

# inotify sees nothing of changes made by other machines on these.
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "davfs", "sshfs", "lustre", "gpfs", "fuse"}


def filesystem_type(path: Path, mounts_file: Path = Path("/proc/mounts")) -> str:
    """The type of the filesystem holding ``path``, from the mount table (longest mount-point prefix)."""
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
    def __init__(self, events: "queue.Queue"):
        self.events = events

    def on_any_event(self, event) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        if kind == "moved":
            self.events.put(("gone", os.fsdecode(event.src_path), event.is_directory))
            self.events.put(("seen", os.fsdecode(event.dest_path), event.is_directory))
        elif kind == "deleted":
            self.events.put(("gone", os.fsdecode(event.src_path), event.is_directory))
        else:  # created, modified, closed
            self.events.put(("seen", os.fsdecode(event.src_path), event.is_directory))


def start_observer(inbox: Path, events: "queue.Queue", polling: bool, poll_interval: float):
    """Start a watchdog observer on ``inbox``; returns ``(observer, description)``."""
    fs_type = filesystem_type(inbox)
    if polling or is_network_filesystem(fs_type):
        observer = PollingObserver(timeout=poll_interval)
        why = "--polling" if polling else f"network filesystem {fs_type}"
        description = f"PollingObserver every {poll_interval:g}s ({why})"
    else:
        observer = Observer()
        description = f"{observer.__class__.__name__} (native, filesystem {fs_type})"
    observer.schedule(_Handler(events), str(inbox), recursive=True)
    observer.daemon = True
    observer.start()
    return observer, description
