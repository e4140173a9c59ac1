"""The review sheet's corrections as training data: ``corrections.csv`` rows back to their images.

``corrections.csv`` (``file,page,label``, see the README) names files the way
a job's rows do, so each is found through the job it came from: either the
file sits in the job folder (``jobs/<id>/corrections.csv``), or a job folder
is given beside it.  Each image goes through :func:`batchclf.scan.prepare.prepare`
like any scan; a file that is gone or no longer decodes is counted and left out.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from batchclf.datasets.labelled import LabelledSet
from batchclf.errors import DataFileError
from batchclf.jobs.folder import Job, kind_of, read_job
from batchclf.scan.discovery import Candidate
from batchclf.scan.prepare import prepare

CORRECTIONS_CSV = "corrections.csv"


def read_corrections(sources: list[Path]) -> LabelledSet:
    """Corrected images from corrections files, found through the job folders given with them or holding them.

    Only job folders given: each one's own ``corrections.csv`` is read.
    """
    sources = [Path(s) for s in sources]
    jobs = [read_job(s) for s in sources if s.is_dir()]
    # Given corrections files, job folders only say where the images are; alone, each job brings its own file.
    files = [s for s in sources if s.is_file()] or [
        job.folder / CORRECTIONS_CSV for job in jobs if (job.folder / CORRECTIONS_CSV).is_file()
    ]
    missing = [s for s in sources if not s.exists()]
    if missing:
        raise DataFileError(f"not found: {', '.join(map(str, missing))}")
    if not files:
        raise DataFileError(f"no {CORRECTIONS_CSV} in {', '.join(map(str, sources))}")
    images, labels, sources_seen = [], [], []
    for path in dict.fromkeys(files):
        owners = [read_job(path.parent)] if kind_of(path.parent) else jobs
        if not owners:
            raise DataFileError(f"{path}: give the job folder it came from too (its file names are relative to that job)")
        found, skipped, digest = 0, 0, hashlib.sha256(path.read_bytes()).hexdigest()
        for file, page, label in _corrections(path):
            image = _image(owners, file, page)
            if image is None:
                skipped += 1
                continue
            images.append(image)
            labels.append(label)
            found += 1
        sources_seen.append({"path": str(path), "images": found, "skipped": skipped, "sha256": digest})
    if not images:
        raise DataFileError(f"none of the corrected images could be found ({', '.join(map(str, files))})")
    return LabelledSet(np.stack(images), np.asarray(labels, np.int64), np.full(len(labels), "corrections"), sources_seen)


def _corrections(path: Path):
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "page", "label"} <= set(reader.fieldnames):
            raise DataFileError(f"{path}: expected the columns file,page,label (got {reader.fieldnames})")
        for number, row in enumerate(reader, start=2):
            label = (row["label"] or "").strip()
            if not (len(label) == 1 and label.isdigit()):
                raise DataFileError(f"{path}: line {number}: label {label!r} is not a digit 0-9")
            page = int(row["page"]) if (row["page"] or "").strip() else 1
            yield row["file"], page, int(label)


def _image(jobs: list[Job], file: str, page: int):
    for job in jobs:
        location = job.input_location({"file": file})
        if location is None:
            continue
        pages = [item for item in prepare(Candidate(location.parent, location)) if item.needs_model]
        matching = [item for item in pages if item.row["page"] == page]
        if matching:
            return matching[0].image
    return None
