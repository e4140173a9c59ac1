"""The read side of the daemon's journal (``jobs/watch-journal.sqlite``) that reports and training need.

The daemon owns the journal and writes it (:mod:`batchclf.watch.journal`,
a higher layer); readers below it (the report, the review sheet, training
from corrections) only ask where the day's inputs were moved, and the
daemon's retention thread which inbox folders earlier runs emptied (on a
connection of its own: the daemon's is its loop's).  The
connection is read-only, so a reader beside a running daemon can never
change it, and a journal that is missing or damaged (it may come with a
job folder from elsewhere) answers "nothing known", never an exception.
What it answers is a hint: :mod:`batchclf.jobs.inputs` decides whether a
place may be read.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def read_only(journal_path: Path) -> sqlite3.Connection:
    """A connection that can never write: readers sit beside a running daemon."""
    return sqlite3.connect(f"{Path(journal_path).resolve().as_uri()}?mode=ro", uri=True)


def loaded_path(value) -> str | None:
    """A path as the journal stores it (text, or bytes for a name that is not UTF-8) back as a str; anything else is None."""
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return value if isinstance(value, str) else None


def moved_locations(journal_path: Path, day: str) -> dict[str, str]:
    """Where the daemon moved each input of ``day``: inbox-relative name -> path now.

    No journal, or one that cannot be read: no locations.  A name reported
    twice that day maps to its latest file.
    """
    journal_path = Path(journal_path)
    if not journal_path.is_file():
        return {}
    try:
        db = read_only(journal_path)
    except (sqlite3.Error, ValueError):
        return {}
    try:
        moved = {}
        for path, move_to in db.execute(
            "SELECT path, move_to FROM files WHERE day = ? AND moved = 1 AND move_to IS NOT NULL ORDER BY id", (day,)
        ):
            name, place = loaded_path(path), loaded_path(move_to)
            if name is not None and place is not None:
                moved[name] = place
        return moved
    except (sqlite3.Error, ValueError):
        return {}
    finally:
        db.close()


def moved_folders(journal_path: Path, since_day: str) -> set[str]:
    """The inbox-relative folders (not the inbox: ``""``) that files decided since ``since_day`` were moved out of.

    Lets a restarted daemon, or the next nightly run, remove inbox folders
    the previous run emptied.  No journal, or one that cannot be read: none.
    """
    journal_path = Path(journal_path)
    if not journal_path.is_file():
        return set()
    try:
        db = read_only(journal_path)
    except (sqlite3.Error, ValueError):
        return set()
    try:
        folders = set()
        for path, source in db.execute("SELECT path, source FROM files WHERE moved = 1 AND day >= ?", (since_day,)):
            folder = os.path.dirname(loaded_path(source) if source else loaded_path(path) or "")
            if folder:
                folders.add(folder)
        return folders
    except (sqlite3.Error, ValueError):
        return set()
    finally:
        db.close()
