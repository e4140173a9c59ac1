"""The daemon's write-ahead journal (SQLite, WAL): what was seen, decided, reported and moved.

Exactly-once reporting rests on one ordering:

1. a batch's rows and file records are committed here in one transaction
   (the decision: these files are done);
2. the rows are appended to the day's ``results.csv``/``results.jsonl`` and
   fsynced, then the files' new byte lengths are committed here;
3. the input files are moved, and the moves recorded.

After a crash at any point, :meth:`Journal.pending_sinks` and
:meth:`Journal.unmoved` tell the daemon how to finish: report files are cut
back to their last committed length (dropping a torn or unacknowledged
append) and the rows after it are written again; files decided but not
moved are moved.  A file whose decision never committed is still in the
inbox and is simply processed again.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from batchclf.jobs.journal import loaded_path, read_only
from batchclf.errors import JournalInboxError
from batchclf.jobs.rows import starts_file


SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    status TEXT NOT NULL,
    day TEXT NOT NULL,
    first_row TEXT,
    move_to TEXT,
    moved INTEGER NOT NULL DEFAULT 0,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS files_identity ON files (path, size, mtime_ns);
CREATE INDEX IF NOT EXISTS files_sha ON files (sha256);
CREATE INDEX IF NOT EXISTS files_unmoved ON files (moved) WHERE moved = 0;
CREATE TABLE IF NOT EXISTS rows (
    seq INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    status TEXT NOT NULL,
    label INTEGER,
    first_page INTEGER NOT NULL,
    row TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rows_day ON rows (day, seq);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sinks (
    day TEXT PRIMARY KEY,
    csv_bytes INTEGER NOT NULL DEFAULT 0,
    jsonl_bytes INTEGER NOT NULL DEFAULT 0,
    last_seq INTEGER NOT NULL DEFAULT 0
);
"""


# Columns added after the first release; an older journal gains them on open.
MIGRATIONS = (
    ("files", "move_kind", "TEXT"),  # 'processed' or 'failed': the folder is chosen when the move happens
    ("files", "source", "BLOB"),  # the real name's bytes when ``path`` shows escapes (a name that is not UTF-8)
    ("files", "ctime_ns", "INTEGER"),  # the file's ctime when taken: see :class:`Known`
)

# SQLite's default limit on host parameters is 999 in old builds: stay under it.
_MAX_PARAMS = 900

PROCESSED, FAILED_MOVE = "processed", "failed"


# A file whose move is decided but not done (retried until it is).
_PENDING = "moved = 0 AND (move_kind IS NOT NULL OR move_to IS NOT NULL)"


@dataclass(frozen=True)
class FileRecord:
    path: str  # relative to the inbox
    size: int
    mtime_ns: int
    sha256: str | None
    status: str
    day: str
    first_row: str | None  # "<day job>/<file>#<page>" of this content's first report
    move_kind: str | None  # PROCESSED or FAILED_MOVE once reported; None: --keep, the file stays
    reason: str | None = None
    source: bytes | None = None  # the real inbox-relative name, when ``path`` had to escape its bytes
    ctime_ns: int | None = None  # the file's ctime, looked up before its bytes were read


@dataclass(frozen=True)
class Known:
    """The latest record of an identity ``(path, size, mtime_ns)``: is a file found under it the same file?

    Size and mtime can be repeated by a new file (``cp -p``, ``touch -d``,
    a scanner reusing names), ctime cannot: the kernel sets it on every
    write, rename and ``utime``, and no user can choose it.  So the same
    ctime means the same file, not read again; another ctime means the file
    is read, and it is the same file only if its sha256 is this one.
    """

    id: int
    ctime_ns: int | None  # None in records older than the column: read once, then known
    sha256: str | None


@dataclass(frozen=True)
class PendingMove:
    """A file decided but not yet moved out of the inbox."""

    id: int
    path: str  # inbox-relative
    size: int
    mtime_ns: int
    day: str
    kind: str | None  # PROCESSED / FAILED_MOVE; None in journals older than move_kind (then ``planned`` says where)
    planned: str | None
    source: bytes | None  # the real name's bytes, when ``path`` shows escapes
    ctime_ns: int | None  # the file's ctime when it was taken (None in older journals)

    @property
    def real_path(self) -> str:
        """The inbox-relative name on disk."""
        return os.fsdecode(self.source) if self.source else self.path


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed decision survives power loss
        self.db.executescript(SCHEMA)
        for table, column, kind in MIGRATIONS:
            columns = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def claim(self, inbox: str) -> None:
        """Bind this journal to one inbox: its records are keyed by inbox-relative names.

        Two inboxes on one journal would mix up their files (one daemon would
        move, or skip, the other's), so a second inbox is refused.
        """
        with self._transaction():
            row = self.db.execute("SELECT value FROM meta WHERE key = 'inbox'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta (key, value) VALUES ('inbox', ?)", (inbox,))
            elif row[0] != inbox:
                raise JournalInboxError(
                    f"{self.path} is the journal of inbox {row[0]}; give inbox {inbox} its own --out folder"
                )

    def known_days(self) -> set[str]:
        return {day for (day,) in self.db.execute("SELECT day FROM sinks")}

    def close(self) -> None:
        self.db.close()

    def known(self, path: str, size: int, mtime_ns: int) -> bool:
        """A file with this identity (path, size, mtime) was already decided."""
        return bool(self.known_many([(path, size, mtime_ns)]))

    def known_many(self, identities: list[tuple[str, int, int]]) -> set[tuple[str, int, int]]:
        """Which of these ``(path, size, mtime_ns)`` were already decided."""
        return set(self.latest_of(identities))

    def latest_of(self, identities: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], Known]:
        """The latest record of each of these ``(path, size, mtime_ns)`` already decided: one query for a whole burst."""
        wanted = set(identities)
        paths = list(dict.fromkeys(path for path, _, _ in identities))
        latest = {}
        # Each path is asked in one part only, so ordering each part by id orders each identity's records.
        for file_id, path, size, mtime_ns, ctime_ns, sha256 in self._select_in(
            "SELECT id, path, size, mtime_ns, ctime_ns, sha256 FROM files WHERE path IN ({}) ORDER BY id", paths
        ):
            if (path, size, mtime_ns) in wanted:
                latest[(path, size, mtime_ns)] = Known(file_id, ctime_ns, sha256)
        return latest

    def refresh_ctimes(self, ctimes: list[tuple[int, int]]) -> None:
        """``(file id, ctime_ns)``: the file was found again with the same bytes under a new ctime (rewritten, touched).

        Remembering the new ctime spares the next look reading it again.
        """
        with self._transaction():
            self.db.executemany("UPDATE files SET ctime_ns = ? WHERE id = ?", [(ctime, file_id) for file_id, ctime in ctimes])

    def first_reports_of(self, digests: list[str]) -> dict[str, str]:
        """For each content hash already reported, the row of its first report (``<job>/<file>#1``)."""
        out: dict[str, str] = {}
        rows = self._select_in(
            "SELECT sha256, first_row FROM files WHERE sha256 IN ({}) AND status != 'duplicate' "
            "AND first_row IS NOT NULL ORDER BY id",
            list(dict.fromkeys(digests)),
        )
        for sha256, first_row in rows:
            out.setdefault(sha256, first_row)
        return out

    def _select_in(self, sql: str, values: list):
        """Rows of ``sql`` with its ``IN ({})`` list filled from ``values``, a few hundred at a time."""
        for start in range(0, len(values), _MAX_PARAMS):
            part = values[start : start + _MAX_PARAMS]
            yield from self.db.execute(sql.format(",".join("?" * len(part))), part)

    def decide(self, rows: list[tuple[str, dict]], files: list[FileRecord], bases: dict[str, tuple[int, int]] | None = None) -> None:
        """Step 1: commit a batch's rows (with their day) and file records in one transaction.

        ``bases`` gives, for a day new to this journal, the CSV and JSONL
        lengths already on disk (a journal that was lost or replaced): they
        count as committed, so recovery never cuts a report back below them.
        """
        with self._transaction():
            self.db.executemany(
                "INSERT INTO rows (day, status, label, first_page, row) VALUES (?, ?, ?, ?, ?)",
                [
                    (day, row["status"], row.get("label"), int(starts_file(row)), json.dumps(row, ensure_ascii=False))
                    for day, row in rows
                ],
            )
            self.db.executemany(
                "INSERT INTO files (path, size, mtime_ns, sha256, status, day, first_row, move_kind, reason, source, ctime_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(f.path, f.size, f.mtime_ns, f.sha256, f.status, f.day, f.first_row, f.move_kind, f.reason, f.source,
                  f.ctime_ns) for f in files],
            )
            for day in {day for day, _ in rows}:
                csv_bytes, jsonl_bytes = (bases or {}).get(day, (0, 0))
                self.db.execute(
                    "INSERT OR IGNORE INTO sinks (day, csv_bytes, jsonl_bytes) VALUES (?, ?, ?)", (day, csv_bytes, jsonl_bytes)
                )

    def pending_sinks(self) -> list[tuple[str, int, int, list[tuple[int, dict]]]]:
        """Per day: committed CSV and JSONL lengths, and the rows decided but not yet acknowledged on disk."""
        out = []
        for day, csv_bytes, jsonl_bytes, last_seq in self.db.execute(
            "SELECT day, csv_bytes, jsonl_bytes, last_seq FROM sinks ORDER BY day"
        ).fetchall():
            rows = [
                (seq, json.loads(text))
                for seq, text in self.db.execute(
                    "SELECT seq, row FROM rows WHERE day = ? AND seq > ? ORDER BY seq", (day, last_seq)
                )
            ]
            out.append((day, csv_bytes, jsonl_bytes, rows))
        return out

    def acknowledge(self, day: str, csv_bytes: int, jsonl_bytes: int, last_seq: int) -> None:
        """Step 2 done: the day's report files hold every row up to ``last_seq`` at these lengths."""
        self.db.execute(
            "UPDATE sinks SET csv_bytes = ?, jsonl_bytes = ?, last_seq = ? WHERE day = ?",
            (csv_bytes, jsonl_bytes, last_seq, day),
        )

    def pending_moves(self) -> list[PendingMove]:
        return [
            PendingMove(*row)
            for row in self.db.execute(
                f"SELECT id, path, size, mtime_ns, day, move_kind, move_to, source, ctime_ns FROM files WHERE {_PENDING} ORDER BY id"
            )
        ]

    def reason_of(self, file_id: int) -> tuple[str | None, str | None, str | None]:
        """``(reason, sha256, day)`` recorded for a file."""
        row = self.db.execute("SELECT reason, sha256, day FROM files WHERE id = ?", (file_id,)).fetchone()
        return row if row else (None, None, None)

    def mark_moved(self, moves: list[tuple[int, str | None]]) -> None:
        """Step 3 done for these files: ``(file id, where it now is)``; None: gone before we could move it."""
        with self._transaction():
            self.db.executemany(
                "UPDATE files SET moved = 1, move_to = COALESCE(?, move_to) WHERE id = ?",
                [(_stored_path(final), file_id) for file_id, final in moves],
            )

    def tally(self, day: str) -> dict:
        """Counts for the day's summary, in the same shape as :class:`batchclf.jobs.writers.Tally`."""
        status = dict(self.db.execute("SELECT status, COUNT(*) FROM rows WHERE day = ? GROUP BY status ORDER BY status", (day,)))
        labels = dict(
            self.db.execute(
                "SELECT label, COUNT(*) FROM rows WHERE day = ? AND label IS NOT NULL GROUP BY label ORDER BY label", (day,)
            )
        )
        files = self.db.execute("SELECT COUNT(*) FROM rows WHERE day = ? AND first_page = 1", (day,)).fetchone()[0]
        return {
            "rows": sum(status.values()),
            "files": files,
            "counts": status,
            "labels": {str(k): v for k, v in labels.items()},
        }

    def recent_labelled(self, limit: int, model: str) -> list[tuple[bool, float]]:
        """The last ``limit`` rows ``model`` labelled (``ok``/``review``), oldest first: ``(is review, confidence)``.

        Seeds the drift window at start, so a restart judges at once.  The
        model is chosen before the LIMIT: rows of an earlier model among the
        latest must not leave the window short of this model's rows.  A row
        that is not strict JSON (a NaN confidence) is no measurement, and
        guarded so (CASE) that json_extract never sees it.
        """
        found = self.db.execute(
            "SELECT status, confidence FROM ("
            " SELECT seq, status, CASE WHEN json_valid(row) THEN json_extract(row, '$.model') END AS model,"
            " CASE WHEN json_valid(row) THEN json_extract(row, '$.confidence') END AS confidence"
            " FROM rows WHERE status IN ('ok', 'review'))"
            " WHERE model = ? AND confidence IS NOT NULL ORDER BY seq DESC LIMIT ?",
            (model, limit),
        ).fetchall()
        return [(status == "review", float(confidence)) for status, confidence in reversed(found)]

    def last_processed_at(self) -> str | None:
        """``processed_at`` of the last row decided: when this inbox last had a success."""
        row = self.db.execute("SELECT row FROM rows ORDER BY seq DESC LIMIT 1").fetchone()
        return json.loads(row[0]).get("processed_at") if row else None

    def days_with_pending_moves(self) -> set[str]:
        """Days that still have files waiting to be moved into their day folders (retention keeps those)."""
        return {day for (day,) in self.db.execute(f"SELECT DISTINCT day FROM files WHERE {_PENDING}")}

    def _transaction(self):
        db = self.db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind, value, tb):
                db.execute("ROLLBACK" if kind else "COMMIT")
                return False

        return _Tx()


def _stored_path(path: str | None):
    """A path as SQLite can hold it: text, or its bytes when the name is not UTF-8 (SQLite stores either in any column)."""
    if path is None:
        return None
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def day_status(journal_path: Path, day: str) -> dict:
    """Read-only: the day's row counts per status, its file count, and the last file decided (for ``service status``).

    Raises ``sqlite3.DatabaseError`` for a journal that cannot be read.
    """
    db = read_only(journal_path)
    try:
        counts = dict(db.execute("SELECT status, COUNT(*) FROM rows WHERE day = ? GROUP BY status", (day,)))
        files = db.execute("SELECT COUNT(*) FROM files WHERE day = ?", (day,)).fetchone()[0]
        last = None
        newest = db.execute("SELECT path, status, day, moved, move_to FROM files ORDER BY id DESC LIMIT 1").fetchone()
        if newest:
            path, status, last_day, moved, move_to = newest
            row = db.execute("SELECT row FROM rows ORDER BY seq DESC LIMIT 1").fetchone()
            last = {"path": path, "status": status, "day": last_day, "moved_to": loaded_path(move_to) if moved else None,
                    "processed_at": json.loads(row[0]).get("processed_at") if row else None}
        return {"counts": counts, "files": files, "last": last}
    finally:
        db.close()
