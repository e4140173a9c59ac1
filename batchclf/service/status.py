"""Is a daemon on this inbox, and what has it done today?  Read-only, and without systemd.

The lock holder comes from the kernel's lock table (``/proc/locks``), not
from trying the lock: a probe would, for a moment, hold the very lock a
starting daemon needs.  The lock file sits in the output folder, named
after the inbox (:func:`~batchclf.watch.lock.lock_path`); the pid written
in it names the last daemon that started, which may be long gone.  The
journal is opened read-only, beside a running daemon, like the report does.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from batchclf.jobs.folder import journal_path
from batchclf.metrics.drift import read_drift_state
from batchclf.printable import printable
from batchclf.watch.journal import day_status
from batchclf.watch import lock as inbox_lock
from batchclf.watch.operations import Operations, retention_dry_run
from batchclf.watch.settings import Effective

PROC_LOCKS = Path("/proc/locks")


@dataclass
class Status:
    inbox: str
    lock_file: str
    running: bool  # a process holds the inbox lock now
    pid: int | None  # that process, else the last daemon the lock file names
    journal: str
    day: str  # today, UTC, as the daemon names its day folders
    files_today: int = 0
    counts_today: dict[str, int] = field(default_factory=dict)
    last: dict | None = None  # the journal's latest file: path, status, day, moved_to, processed_at
    problem: str | None = None  # why the journal could not be read
    drift: str = ""  # the drift state the daemon last recorded (jobs/watch-drift.json), as one line
    retention: str | None = None  # what retention would remove now; None: no keep period set


    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def lines(self) -> list[str]:
        if self.running:
            daemon = f"running, pid {self.pid}"
        elif self.pid:
            daemon = f"not running (the last daemon was pid {self.pid})"
        else:
            daemon = "not running (never started on this inbox)"
        counts = ", ".join(f"{status} {n}" for status, n in sorted(self.counts_today.items())) or "nothing yet"
        out = [f"inbox:   {self.inbox}", f"daemon:  {daemon}", f"journal: {self.journal}"]
        if self.problem:
            out.append(f"         {self.problem}")
        out.append(f"today:   {self.day}: {self.files_today} files; rows {counts}")
        if self.last:
            moved = f", now {self.last['moved_to']}" if self.last.get("moved_to") else ""
            when = self.last.get("processed_at") or self.last["day"]
            out.append(f"last:    {self.last['path']} ({self.last['status']}) at {when}{moved}")
        out.append(self.drift)
        if self.retention is not None:
            out.append(self.retention)
        return out


def status(effective: Effective, now: datetime | None = None) -> Status:
    inbox: Path = effective.values["inbox"].value
    out_dir: Path = effective.values["out_dir"].value
    lock = inbox_lock.lock_path(inbox, out_dir)
    journal = journal_path(out_dir)
    holder = lock_holder(lock)
    day = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d")
    result = Status(str(inbox), str(lock), holder is not None, holder or recorded_pid(lock), str(journal), day)
    _read_journal(journal, result)
    result.drift = drift_line(out_dir)
    options = effective.options()
    operations = Operations.from_options(options)
    if operations.keep_processed is not None or operations.keep_failed is not None:  # "forever" sets none
        result.retention = retention_dry_run(options).line()
    return result


def drift_line(out_dir: Path) -> str:
    """The drift state's one line; the state file is input like any other, so it is escaped for the terminal."""
    state = read_drift_state(out_dir)
    if state is None:
        return "drift: nothing recorded yet (no daemon has run on these folders with drift detection on)"
    return printable(state.line())


def lock_holder(lock: Path) -> int | None:
    """The pid holding an ``flock`` on ``lock``, from ``/proc/locks`` (``1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE ...``)."""
    try:
        info = os.stat(lock)
        table = PROC_LOCKS.read_text()
    except OSError:
        return None
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:  # "->" lines are waiters
            return int(fields[4])
    return None


def recorded_pid(lock: Path) -> int | None:
    try:
        return inbox_lock.recorded_pid(lock.read_text(errors="replace"))
    except OSError:
        return None


def _read_journal(path: Path, result: Status) -> None:
    if not path.is_file():
        result.problem = "no journal yet (the daemon has not run with these folders)"
        return
    try:
        today = day_status(path, result.day)
    except sqlite3.DatabaseError as exc:
        result.problem = f"cannot read the journal: {exc}"
        return
    result.counts_today, result.files_today, result.last = today["counts"], today["files"], today["last"]
