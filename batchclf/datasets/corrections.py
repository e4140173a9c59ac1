"""The review sheet's corrections as training data: ``corrections.csv`` rows back to their images.

``corrections.csv`` (``file,page,label``, see the README) names files the way
a job's rows do, so each is found through the job it came from: either the
file sits in the job folder (``jobs/<id>/corrections.csv``), or a job folder
is given beside it.  Each image goes through :func:`batchclf.scan.prepare.prepare`
like any scan (once per file, however many of its pages are corrected); a
file that is gone, no longer decodes, or lies outside the job's inputs
(:mod:`batchclf.jobs.inputs`) is counted and left out.

The file is hostile input and is checked once, as it is read: a regular
file of at most :data:`MAX_BYTES`, UTF-8 text, at most :data:`MAX_ROWS`
corrections, labels the ASCII digits ``0``-``9`` only, pages ASCII whole
numbers.  A bad line is one ``FILE:LINE: ...`` error.  The same image and
page listed again is a warning, and the last label wins (the person's
latest word).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from pathlib import Path

import numpy as np

from batchclf.datasets.labelled import LabelledSet
from batchclf.errors import DataFileError
from batchclf.jobs.folder import Job, kind_of, read_job
from batchclf.jobs.meta import read_regular_file
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

log = logging.getLogger("batchclf.datasets")


def read_corrections(sources: list[Path], inputs: list[Path] | None = None) -> LabelledSet:
    """Corrected images from corrections files, found through the job folders given with them or holding them.

    Only job folders given: each one's own ``corrections.csv`` is read.
    ``inputs``: folders the user names as holding the jobs' inputs (as
    ``report --inputs``).
    """
    sources = [Path(s) for s in sources]
    missing = [s for s in sources if not s.exists()]
    if missing:
        raise DataFileError(f"not found: {', '.join(map(str, missing))}")
    jobs = [read_job(s, inputs or ()) for s in sources if s.is_dir()]
    # Given corrections files, job folders only say where the images are; alone, each job brings its own file.
    files = [s for s in sources if not s.is_dir()] or [
        job.folder / CORRECTIONS_CSV for job in jobs if (job.folder / CORRECTIONS_CSV).is_file()
    ]
    if not files:
        raise DataFileError(f"no {CORRECTIONS_CSV} in {', '.join(map(str, sources))}")
    images, labels, sources_seen = [], [], []
    pages = _Pages()
    for path in dict.fromkeys(files):
        owners = [read_job(path.parent, inputs or ())] if kind_of(path.parent) else jobs
        if not owners:
            raise DataFileError(f"{path}: give the job folder it came from too (its file names are relative to that job)")
        data = read_regular_file(path, MAX_BYTES, DataFileError)
        corrections = _corrections(path, data)
        found, skipped = 0, 0
        for (file, page), label in corrections.items():
            image = _image(owners, file, page, pages)
            if image is None:
                skipped += 1
                continue
            images.append(image)
            labels.append(label)
            found += 1
        sources_seen.append({"path": str(path), "images": found, "skipped": skipped, "sha256": hashlib.sha256(data).hexdigest()})
    if not images:
        raise DataFileError(f"none of the corrected images could be found ({', '.join(map(str, files))})")
    return LabelledSet(np.stack(images), np.asarray(labels, np.int64), np.full(len(labels), "corrections"), sources_seen)


def _corrections(path: Path, data: bytes) -> dict[tuple[str, int], int]:
    """``(file, page) -> label`` in file order; a repeated image and page keeps its last label, with a warning."""
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
    at = {name: header.index(name) for name in ("file", "page", "label")}
    corrections: dict[tuple[str, int], int] = {}
    lines: dict[tuple[str, int], int] = {}
    count = repeated = 0
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
                log.warning(
                    "warning: %s:%d: %s page %d was corrected before (line %d, label %d); the last label, %d, is used",
                    path, number, printable(file), page, lines[key], corrections[key], label,
                )
            del corrections[key]  # keep file order by the last listing
        corrections[key], lines[key] = label, number
    if repeated > REPEATS_SHOWN:
        log.warning("warning: %s: %d more repeated corrections; each image keeps its last label", path, repeated - REPEATS_SHOWN)
    return corrections


def _parse(path: Path, number: int, record: list[str], at: dict[str, int]) -> tuple[str, int, int]:
    def field(name: str) -> str:
        index = at[name]
        return record[index] if index < len(record) else ""

    file, page, label = field("file"), field("page").strip(), field("label").strip()
    if any(len(value) > MAX_FIELD for value in (file, page, label)):
        raise DataFileError(f"{path}:{number}: a field longer than {MAX_FIELD} characters")
    if not file:
        raise DataFileError(f"{path}:{number}: no file name")
    if not _LABEL.match(label):
        raise DataFileError(f"{path}:{number}: label {printable(label)[:20]!r} is not a digit 0-9")
    if page and not (_PAGE.match(page) and 1 <= int(page) <= MAX_PAGE):
        raise DataFileError(f"{path}:{number}: page {printable(page)[:20]!r} is not a page number (1, 2, ...)")
    return file, int(page) if page else 1, int(label)


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

