"""A review sheet's ``corrections.csv``, read strictly: the one parser of such a file.

``batchclf review apply`` (:mod:`batchclf.review.apply`) and training from
reviews (:mod:`batchclf.datasets.corrections`) both read it here, so one
hostile file gets one verdict whichever command is given it.

The format is written by the sheet (:mod:`batchclf.report.html` describes
it): ``file,page,label`` and, since the review station, ``decision``,
``decided_at`` and ``job``.  Columns are found by name, so older files
(the first three only) read too.  An empty ``page`` is the sheet's way of
naming a failed file's row, which has no page: it reads as page 1, and
:func:`row_key` matches a job's rows the same way (as the sheet shows a
row without a page as its file's first page).

The file comes from a person's download folder, so it is hostile until
checked: a regular file of at most :data:`MAX_BYTES`
(:func:`batchclf.jobs.meta.read_regular_file`), no NUL byte (a binary
file), UTF-8 (a byte order mark allowed), every line as wide as the
header, at most :data:`MAX_ROWS` lines, fields of at most
:data:`MAX_FIELD` characters, labels ASCII ``0``-``9`` only, pages ASCII
whole numbers from 1 to :data:`batchclf.limits.MAX_PAGES`, known
decisions, ISO 8601 times with a zone.  Anything else is one
:class:`DataFileError` naming the file and the line (``FILE:LINE: ...``).
The same ``file,page`` listed again keeps its last line, in its place, and
is counted in :attr:`Decisions.repeated`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from batchclf.errors import DataFileError
from batchclf.jobs.meta import read_regular_file
from batchclf.jobs.verified import BLANK, DECISIONS, NOT_A_DIGIT
from batchclf.limits import MAX_DECISIONS, MAX_PAGES
from batchclf.printable import printable

MAX_BYTES = 64 * 1024 * 1024
MAX_ROWS = MAX_DECISIONS
MAX_FIELD = 4096  # a file name longer than PATH_MAX is not one of ours
REQUIRED = ("file", "page", "label")
NO_DIGIT = (NOT_A_DIGIT, BLANK)  # decisions that give no digit
REPEATS_KEPT = 5  # repeated lines kept to be named one by one; the rest are counted

_LABEL = re.compile(r"[0-9]\Z")  # ASCII only: "²", "١" and "৭" are digits to str.isdigit, not to us
_PAGE = re.compile(r"[0-9]{1,9}\Z")


@dataclass(frozen=True, slots=True)
class Decision:
    """What a person decided about one ``file,page`` (``label`` None for not-a-digit and blank)."""

    file: str
    page: int  # 1-based; an empty page (a failed file's row) is 1
    label: int | None
    decision: str | None  # not-a-digit or blank; None for a digit (accepted or corrected: settled against the model's label)
    decided_at: str  # UTC ISO 8601; an old file's: the time the file was saved
    job: str | None
    line: int = 0  # the line of its file that said it (0: not from a corrections file)

    @property
    def key(self) -> tuple[str, int]:
        return self.file, self.page


def row_key(row: dict) -> tuple[str, int]:
    """The ``(file, page)`` a decision names a job's row by: a row without a page (a failed file) is page 1."""
    return row["file"], row["page"] or 1


@dataclass
class Decisions:
    """One corrections file read: its decisions in file order (one per ``file,page``) and what it was."""

    path: Path
    sha256: str
    items: list[Decision] = field(default_factory=list)
    repeated: int = 0  # lines that named a file,page again (the last one counts)
    repeats: list[tuple[Decision, Decision]] = field(default_factory=list)  # the first REPEATS_KEPT: (earlier, later)


def read_decisions(path: Path) -> Decisions:
    path = Path(path)
    data = read_regular_file(path, MAX_BYTES, DataFileError)
    if b"\0" in data:
        raise DataFileError(f"{path}: a binary file, not a corrections CSV (file,page,label)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFileError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    saved_at = _iso(datetime.fromtimestamp(path.stat().st_mtime, timezone.utc))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    found = Decisions(path, hashlib.sha256(data).hexdigest())
    header = _next(reader, path)
    if header is None or not set(REQUIRED) <= set(header) or len(set(header)) != len(header):
        shown = printable(",".join(header)[:80]) if header else "nothing"
        raise DataFileError(f"{path}:1: expected the columns file,page,label, each once (got {shown})")
    by_key: dict[tuple[str, int], Decision] = {}
    count = 0
    while (record := _next(reader, path)) is not None:
        if not record:
            continue  # a blank line
        number = reader.line_num
        count += 1
        if count > MAX_ROWS:
            raise DataFileError(f"{path}:{number}: more than {MAX_ROWS:,} corrections; split the file")
        if len(record) != len(header):
            raise DataFileError(f"{path}:{number}: {len(record)} fields, expected {len(header)}")
        decision = _decision(dict(zip(header, record)), f"{path}:{number}", number, saved_at)
        earlier = by_key.pop(decision.key, None)  # the last line counts, in its own place
        if earlier is not None:
            found.repeated += 1
            if len(found.repeats) < REPEATS_KEPT:
                found.repeats.append((earlier, decision))
        by_key[decision.key] = decision
    found.items = list(by_key.values())
    return found


def checked(where: str, file: str, page: str, label: str, decision: str | None = None) -> tuple[str, int, int | None]:
    """The one check of a decision's file, page and label (as text): ``(file, page, label)``, label None for no digit.

    ``where`` names the file and line in an error.  Also used for the person's
    rows of a ``verified.csv``, so they pass the same checks as a corrections line.
    """
    if any(len(value) > MAX_FIELD for value in (file, page, label)):
        raise DataFileError(f"{where}: a field longer than {MAX_FIELD:,} characters")
    if not file:
        raise DataFileError(f"{where}: no file name")
    if decision in NO_DIGIT:
        if label:
            raise DataFileError(f"{where}: label {printable(label)[:20]!r} given for a row decided {decision}")
    elif not _LABEL.match(label):
        raise DataFileError(f"{where}: label {printable(label)[:20]!r} is not a digit 0-9")
    if page and not (_PAGE.match(page) and 1 <= int(page) <= MAX_PAGES):
        raise DataFileError(f"{where}: page {printable(page)[:20]!r} is not a page number (1, 2, ...)")
    return file, int(page) if page else 1, None if decision in NO_DIGIT else int(label)


def _next(reader, path: Path) -> list[str] | None:
    try:
        return next(reader, None)
    except csv.Error as exc:
        raise DataFileError(f"{path}:{reader.line_num}: {exc}") from None


def _decision(cells: dict[str, str], where: str, line: int, saved_at: str) -> Decision:
    for name, value in cells.items():
        if len(value) > MAX_FIELD:
            raise DataFileError(f"{where}: {printable(name)[:40]} is {len(value):,} characters long (at most {MAX_FIELD:,})")
    decision = cells.get("decision", "").strip() or None
    if decision is not None and decision not in DECISIONS:
        raise DataFileError(f"{where}: decision {printable(decision)[:20]!r} is not one of {', '.join(DECISIONS)}")
    file, page, label = checked(where, cells["file"], cells["page"].strip(), cells["label"].strip(), decision)
    return Decision(
        file=file,
        page=page,
        label=label,
        decision=decision if decision in NO_DIGIT else None,  # a digit's kind is settled against the job's row
        decided_at=_time(cells.get("decided_at", "").strip(), where) or saved_at,
        job=cells.get("job") or None,
        line=line,
    )


def _time(value: str, where: str) -> str | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DataFileError(f"{where}: decided_at {printable(value)[:40]!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise DataFileError(f"{where}: decided_at {printable(value)[:40]!r} has no time zone")
    try:
        return _iso(moment)
    except OverflowError:  # year 1 at +01:00 is before year 1 in UTC
        raise DataFileError(f"{where}: decided_at {printable(value)[:40]!r} is out of range") from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
