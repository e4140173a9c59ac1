"""A review sheet's ``corrections.csv``, read strictly: the one place such a file is checked.

The format is written by the sheet (:mod:`batchclf.report.html` describes
it): ``file,page,label`` and, since the review station, ``decision``,
``decided_at`` and ``job``.  Columns are found by name, so older files
(the first three only) read too: each of their labels is a decision whose
kind (accepted or corrected) follows from the model's label.

The file comes from a person's download folder, so it is hostile until
checked: a regular file of at most :data:`MAX_BYTES`, UTF-8 (a byte order
mark allowed), at most :data:`MAX_ROWS` rows, fields of at most
:data:`MAX_FIELD` characters, labels ASCII ``0``-``9`` only, pages positive
ASCII integers, known decisions, ISO 8601 times.  Anything else is one
:class:`DataFileError` naming the file and the line.  The same ``file,page``
listed twice keeps its last line and is counted in :attr:`Decisions.repeated`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from batchclf.errors import DataFileError
from batchclf.jobs.verified import BLANK, DECISIONS, NOT_A_DIGIT

MAX_BYTES = 64 * 1024 * 1024
MAX_ROWS = 1_000_000
MAX_FIELD = 4096  # a file name longer than PATH_MAX is not one of ours
REQUIRED = ("file", "page", "label")
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True)
class Decision:
    """What a person decided about one ``file,page`` (``label`` None for not-a-digit and blank)."""

    file: str
    page: int | None
    label: int | None
    decision: str | None  # not-a-digit or blank; None for a digit (accepted or corrected: settled against the model's label)
    decided_at: str  # UTC ISO 8601; an old file's: the time the file was saved
    job: str | None

    @property
    def key(self) -> tuple[str, int | None]:
        return self.file, self.page


@dataclass
class Decisions:
    """One corrections file read: its decisions in file order (one per ``file,page``) and what it was."""

    path: Path
    sha256: str
    items: list[Decision] = field(default_factory=list)
    repeated: int = 0  # lines that named a file,page again (the last one counts)


def read_decisions(path: Path) -> Decisions:
    path = Path(path)
    data = _read_capped(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    saved_at = _file_time(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    found = Decisions(path, hashlib.sha256(data).hexdigest())
    by_key: dict[tuple[str, int | None], Decision] = {}
    try:
        header = next(reader, None)
        if header is None or not set(REQUIRED) <= set(header) or len(set(header)) != len(header):
            raise DataFileError(f"{path}: expected the columns file,page,label (got {header!r})")
        where = {name: header.index(name) for name in header}
        for number, record in enumerate(reader, start=2):
            if number - 1 > MAX_ROWS:
                raise DataFileError(f"{path}: more than {MAX_ROWS:,} rows")
            if not record:
                continue  # a blank line
            if len(record) != len(header):
                raise DataFileError(f"{path}: line {number}: {len(record)} fields, expected {len(header)}")
            decision = _decision({name: record[index] for name, index in where.items()}, saved_at, path, number)
            if decision.key in by_key:
                found.repeated += 1
                del by_key[decision.key]  # the last line counts, in its own place
            by_key[decision.key] = decision
    except csv.Error as exc:
        raise DataFileError(f"{path}: line {reader.line_num}: {exc}") from None
    found.items = list(by_key.values())
    return found


def _read_capped(path: Path) -> bytes:
    """The file's bytes: a regular file (never a FIFO or a device), at most MAX_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise DataFileError(f"{path}: not found") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise DataFileError(f"{path}: not a regular file")
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise DataFileError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MiB; not a corrections file")
    return data


def _decision(cells: dict[str, str], saved_at: str, path: Path, number: int) -> Decision:
    def bad(what: str) -> DataFileError:
        return DataFileError(f"{path}: line {number}: {what}")

    for name, value in cells.items():
        if len(value) > MAX_FIELD:
            raise bad(f"{name} is {len(value):,} characters long (at most {MAX_FIELD:,})")
    file, page, label = cells["file"], cells["page"].strip(), cells["label"].strip()
    if not file:
        raise bad("file is empty")
    if page and not (set(page) <= _DIGITS and int(page) >= 1):
        raise bad(f"page {page!r} is not a page number (1, 2, ...)")
    decision = cells.get("decision", "").strip() or None
    if decision is not None and decision not in DECISIONS:
        raise bad(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    if decision in (NOT_A_DIGIT, BLANK):
        if label:
            raise bad(f"label {label!r} given for a row decided {decision}")
    elif not (len(label) == 1 and label in _DIGITS):
        raise bad(f"label {label!r} is not a digit 0-9")
    return Decision(
        file=file,
        page=int(page) if page else None,
        label=int(label) if label else None,
        decision=decision if decision in (NOT_A_DIGIT, BLANK) else None,  # a digit's kind is settled against the job's row
        decided_at=_time(cells.get("decided_at", "").strip(), bad) or saved_at,
        job=cells.get("job") or None,
    )


def _time(value: str, bad) -> str | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad(f"decided_at {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise bad(f"decided_at {value!r} has no time zone")
    return _iso(moment)


def _file_time(path: Path) -> str:
    return _iso(datetime.fromtimestamp(path.stat().st_mtime, timezone.utc))


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
