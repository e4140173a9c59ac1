"""The review sheet's decisions as training data: ``corrections.csv`` or ``verified.csv`` rows back to their images.

``corrections.csv`` (``file,page,label`` and, from the review station on,
``decision,decided_at,job``; see the README) names files the way a job's
rows do, so each is found through the job it came from: either the file
sits in the job folder (``jobs/<id>/corrections.csv``), or a job folder is
given beside it.  Rows decided ``not-a-digit`` or ``blank`` are no digit to
learn and are counted and left out.  A job folder given alone that has a
``verified.csv`` (``batchclf review apply``) is learnt from that instead:
every row a person accepted or corrected (:func:`batchclf.jobs.verified.person_labels`).
Each image goes through :func:`batchclf.scan.prepare.prepare` like any scan
(once per file, however many of its pages are corrected); a file that is
gone, no longer decodes, or lies outside the job's inputs
(:mod:`batchclf.jobs.inputs`) is counted and left out.

The file is hostile input and is checked once, as it is read: a regular
file of at most :data:`MAX_BYTES`, UTF-8 text, at most :data:`MAX_ROWS`
corrections, labels the ASCII digits ``0``-``9`` only, pages ASCII whole
numbers, decisions one of :data:`batchclf.jobs.verified.DECISIONS`.  A bad
line is one ``FILE:LINE: ...`` error.  The same image and page listed again
is a warning, and the last label wins (the person's latest word).  The
person's labels of a ``verified.csv`` pass the same label, page and count
checks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batchclf.datasets.labelled import LabelledSet
from batchclf.errors import DataFileError
from batchclf.jobs.folder import Job, kind_of, read_job
from batchclf.jobs.meta import read_regular_file
from batchclf.jobs.verified import (
    BLANK, DECISIONS, NOT_A_DIGIT, VERIFIED_CSV, has_verified, person_rows,
)
from batchclf.printable import printable
from batchclf.scan.discovery import Candidate
from batchclf.scan.prepare import prepare

CORRECTIONS_CSV = "corrections.csv"
MAX_BYTES = 64 * 1024 * 1024
MAX_ROWS = 100_000  # a person's corrections; more is not a review sheet's download
MAX_FIELD = 4096  # a file name longer than PATH_MAX is no file
MAX_PAGE = 1_000_000
REPEATS_SHOWN = 5  # repeated images named one by one; the rest counted

_LABEL = re.compile(r"[0-9]\Z")  # ASCII only: "²", "١" and "৭" are digits to str.isdigit, not to us
_PAGE = re.compile(r"[0-9]{1,7}\Z")
NO_DIGIT = (NOT_A_DIGIT, BLANK)  # decisions that give no digit to learn

log = logging.getLogger("batchclf.datasets")


def read_corrections(sources: list[Path], inputs: list[Path] | None = None) -> LabelledSet:
    """Corrected images from corrections files, found through the job folders given with them or holding them.

    Only job folders given: each one's own decisions are read, its
    ``verified.csv`` when a person's review was applied to it, else its
    ``corrections.csv``.  ``inputs``: folders the user names as holding the
    jobs' inputs (as ``report --inputs``).
    """
    sources = [Path(s) for s in sources]
    missing = [s for s in sources if not s.exists()]
    if missing:
        raise DataFileError(f"not found: {', '.join(map(str, missing))}")
    jobs = [read_job(s, inputs or ()) for s in sources if s.is_dir()]
    # Given corrections files, job folders only say where the images are; alone, each job brings its own file.
    files = [s for s in sources if not s.is_dir()] or [
        path for path in map(_decisions_file, (job.folder for job in jobs)) if path.is_file()
    ]
    if not files:
        raise DataFileError(f"no {CORRECTIONS_CSV} or {VERIFIED_CSV} in {', '.join(map(str, sources))}")
    images, labels, sources_seen = [], [], []
    pages = _Pages()
    for path in dict.fromkeys(files):
        owners = [read_job(path.parent, inputs or ())] if kind_of(path.parent) else jobs
        if not owners:
            raise DataFileError(f"{path}: give the job folder it came from too (its file names are relative to that job)")
        read = _person_labels(path) if path.name == VERIFIED_CSV else _corrections_file(path)
        found, skipped = 0, 0
        for (file, page), label in read.labels.items():
            image = _image(owners, file, page, pages)
            if image is None:
                skipped += 1
                continue
            images.append(image)
            labels.append(label)
            found += 1
        sources_seen.append({"path": str(path), "images": found, "skipped": skipped, "no_digit": read.no_digit, "sha256": read.sha256})
    if not images:
        raise DataFileError(f"none of the corrected images could be found ({', '.join(map(str, files))})")
    return LabelledSet(np.stack(images), np.asarray(labels, np.int64), np.full(len(labels), "corrections"), sources_seen)


@dataclass
class _Read:
    """One decisions file read: ``(file, page) -> label`` in file order, rows with no digit, the file's sha256."""

    labels: dict[tuple[str, int], int]
    no_digit: int  # rows decided not-a-digit or blank: nothing to learn
    sha256: str


def _decisions_file(folder: Path) -> Path:
    """A job's own decisions: the person's verified results when applied (they hold every decision), else the sheet's download."""
    return folder / (VERIFIED_CSV if has_verified(folder) else CORRECTIONS_CSV)


def _corrections_file(path: Path) -> _Read:
    data = read_regular_file(path, MAX_BYTES, DataFileError)
    labels, no_digit = _corrections(path, data)
    return _Read(labels, no_digit, hashlib.sha256(data).hexdigest())


def _person_labels(path: Path) -> _Read:
    """The digits a person gave in a job's ``verified.csv``, through the same checks as a corrections line.

    ``verified.csv`` is a job's file (any damage is one JobCorruptError naming
    it); its person rows are checked here like corrections: ASCII digits,
    page numbers, at most :data:`MAX_ROWS`.  A name listed again (a daemon
    day can see one twice) keeps its last label.
    """
    labels: dict[tuple[str, int], int] = {}
    count = no_digit = 0
    for row in person_rows(path.parent):  # one pass: the digits to learn and the cells that hold none
        if row["decision"] in (NOT_A_DIGIT, BLANK):
            no_digit += 1
            continue
        count += 1
        if count > MAX_ROWS:
            raise DataFileError(f"{path}: more than {MAX_ROWS:,} rows decided by a person")
        file, page, label = row["file"], row["page"], row["label"]
        where = f"{path}: {printable(str(file))[:80]} page {page}"
        file, page, label = _checked(where, file, "" if page is None else str(page), "" if label is None else str(label))
        labels.pop((file, page), None)
        labels[(file, page)] = label
    with open(path, "rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    return _Read(labels, no_digit, sha256)


def _corrections(path: Path, data: bytes) -> tuple[dict[tuple[str, int], int], int]:
    """``(file, page) -> label`` in file order, and how many rows had no digit; a repeated image and page keeps its last word."""
    if b"\0" in data:
        raise DataFileError(f"{path}: a binary file, not a corrections CSV (file,page,label)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFileError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataFileError(f"{path}:1: {exc}") from None
    if header is None or not {"file", "page", "label"} <= set(header):
        shown = printable(",".join(header)[:80]) if header else "nothing"
        raise DataFileError(f"{path}:1: expected the columns file,page,label (got {shown})")
    # "decision" is the review station's column; a file of the first format (file,page,label) has none.
    at = {name: header.index(name) for name in ("file", "page", "label", "decision") if name in header}
    corrections: dict[tuple[str, int], int] = {}
    lines: dict[tuple[str, int], int] = {}
    count = repeated = no_digit = 0
    while True:
        try:
            record = next(reader, None)
        except csv.Error as exc:
            raise DataFileError(f"{path}:{reader.line_num}: {exc}") from None
        if record is None:
            break
        number = reader.line_num
        if not record:
            continue  # a blank line
        count += 1
        if count > MAX_ROWS:
            raise DataFileError(f"{path}:{number}: more than {MAX_ROWS:,} corrections; split the file")
        file, page, label = _parse(path, number, record, at)
        key = (file, page)
        if key in corrections:
            repeated += 1
            if repeated <= REPEATS_SHOWN:
                latest = f"the last label, {label}, is used" if label is not None else "it is now marked as no digit and left out"
                log.warning(
                    "warning: %s:%d: %s page %d was corrected before (line %d, label %d); %s",
                    path, number, printable(file), page, lines[key], corrections[key], latest,
                )
            del corrections[key]  # keep file order by the last listing
        if label is None:
            no_digit += 1  # not a digit, or blank: nothing to learn
            continue
        corrections[key], lines[key] = label, number
    if repeated > REPEATS_SHOWN:
        log.warning("warning: %s: %d more repeated corrections; each image keeps its last label", path, repeated - REPEATS_SHOWN)
    return corrections, no_digit


def _parse(path: Path, number: int, record: list[str], at: dict[str, int]) -> tuple[str, int, int | None]:
    """One line's ``(file, page, label)``; label None for a row decided not-a-digit or blank."""
    def field(name: str) -> str:
        index = at.get(name)
        return record[index] if index is not None and index < len(record) else ""

    decision = field("decision").strip()
    if len(decision) > MAX_FIELD:
        raise DataFileError(f"{path}:{number}: a field longer than {MAX_FIELD} characters")
    if decision and decision not in DECISIONS:
        raise DataFileError(f"{path}:{number}: decision {printable(decision)[:20]!r} is not one of {', '.join(DECISIONS)}")
    return _checked(f"{path}:{number}", field("file"), field("page").strip(), field("label").strip(), decision in NO_DIGIT)


def _checked(where: str, file: str, page: str, label: str, no_digit: bool = False) -> tuple[str, int, int | None]:
    """The one check of a decision's file, page and label (as text); ``where`` names the file and line in an error."""
    if any(len(value) > MAX_FIELD for value in (file, page, label)):
        raise DataFileError(f"{where}: a field longer than {MAX_FIELD} characters")
    if not file:
        raise DataFileError(f"{where}: no file name")
    if no_digit:
        if label:
            raise DataFileError(f"{where}: label {printable(label)[:20]!r} given for a row that is no digit")
    elif not _LABEL.match(label):
        raise DataFileError(f"{where}: label {printable(label)[:20]!r} is not a digit 0-9")
    if page and not (_PAGE.match(page) and 1 <= int(page) <= MAX_PAGE):
        raise DataFileError(f"{where}: page {printable(page)[:20]!r} is not a page number (1, 2, ...)")
    return file, int(page) if page else 1, None if no_digit else int(label)


class _Pages:
    """The decoded pages of each file, kept while its corrections are read: a file is decoded once, not once per row."""

    def __init__(self):
        self._pages: dict[Path, dict[int, np.ndarray]] = {}

    def page(self, location: Path, page: int) -> np.ndarray | None:
        if location not in self._pages:
            self._pages[location] = {
                item.row["page"]: item.image for item in prepare(Candidate(location.parent, location)) if item.needs_model
            }
        return self._pages[location].get(page)


def _image(jobs: list[Job], file: str, page: int, pages: _Pages):
    for job in jobs:
        location = job.input_location({"file": file})
        if location is None:
            continue
        image = pages.page(location, page)
        if image is not None:
            return image
    return None

