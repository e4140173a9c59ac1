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

The file is hostile input and is checked once, as it is read, by the one
parser of corrections files (:mod:`batchclf.datasets.decisions`, which
``review apply`` uses too): a bad line is one ``FILE:LINE: ...`` error.
The same image and page listed again is a warning, and the last label wins
(the person's latest word).  The person's labels of a ``verified.csv``
pass the same label, page and count checks.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batchclf.datasets import decisions
from batchclf.datasets.decisions import NO_DIGIT, checked, read_decisions
from batchclf.datasets.labelled import LabelledSet
from batchclf.errors import DataFileError
from batchclf.jobs.folder import Job, kind_of, read_job
from batchclf.jobs.verified import VERIFIED_CSV, has_verified, person_rows
from batchclf.printable import printable
from batchclf.scan.discovery import Candidate
from batchclf.scan.prepare import prepare

CORRECTIONS_CSV = "corrections.csv"

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
    found = read_decisions(path)
    _warn_repeats(found)
    labels = {decision.key: decision.label for decision in found.items if decision.label is not None}
    return _Read(labels, len(found.items) - len(labels), found.sha256)


def _warn_repeats(found: decisions.Decisions) -> None:
    """The person's latest word wins: say so for the first few images listed again, and count the rest."""
    for earlier, later in found.repeats:
        before = f"label {earlier.label}" if earlier.label is not None else earlier.decision
        latest = f"the last label, {later.label}, is used" if later.label is not None else "it is now marked as no digit and left out"
        log.warning("warning: %s:%d: %s page %d was corrected before (line %d, %s); %s",
                    found.path, later.line, printable(later.file), later.page, earlier.line, before, latest)
    if found.repeated > len(found.repeats):
        log.warning("warning: %s: %d more repeated corrections; each image keeps its last label", found.path,
                    found.repeated - len(found.repeats))


def _person_labels(path: Path) -> _Read:
    """The digits a person gave in a job's ``verified.csv``, through the same checks as a corrections line.

    ``verified.csv`` is a job's file (any damage is one JobCorruptError naming
    it); its person rows are checked here like corrections (the one
    :func:`~batchclf.datasets.decisions.checked`): ASCII digits, page
    numbers, at most :data:`batchclf.datasets.decisions.MAX_ROWS`.  A name
    listed again (a daemon day can see one twice) keeps its last label.
    """
    labels: dict[tuple[str, int], int] = {}
    count = no_digit = 0
    for row in person_rows(path.parent):  # one pass: the digits to learn and the cells that hold none
        if row["decision"] in NO_DIGIT:
            no_digit += 1
            continue
        count += 1
        if count > decisions.MAX_ROWS:
            raise DataFileError(f"{path}: more than {decisions.MAX_ROWS:,} rows decided by a person")
        file, page, label = row["file"], row["page"], row["label"]
        where = f"{path}: {printable(str(file))[:80]} page {page}"
        file, page, label = checked(where, file, "" if page is None else str(page), "" if label is None else str(label))
        labels.pop((file, page), None)
        labels[(file, page)] = label
    with open(path, "rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    return _Read(labels, no_digit, sha256)


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

