"""The job folder: its names, its two layouts, creating one, and reading one back.

Everything under ``jobs/`` is one of two kinds:

- a **classify** job ``jobs/<id>/`` (id ``20261124T031502Z-3f9a``) written once
  by ``batchclf classify``: ``results.csv``, ``results.json``, ``summary.json``.
  While it runs only hidden ``.results.*.partial`` files exist, and
  ``summary.json`` is written last, so a job with a summary is complete.
- a **watch** day ``jobs/watch-YYYY-MM-DD/`` appended to all day by the inbox
  daemon: ``results.csv``, ``results.jsonl``, ``summary.json`` (rewritten every
  few seconds), beside the daemon's journal ``jobs/watch-journal.sqlite``.

``results.csv`` is the source of truth for rows; ``summary.json`` holds the
metadata (model, device, timings).  Readers go through :func:`read_job`, which
turns every missing or corrupt file into one :class:`JobNotFoundError` or
:class:`JobCorruptError` naming the file.
"""

from __future__ import annotations

import csv
import math
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

from batchclf.errors import JobCorruptError, JobNotFoundError
from batchclf.jobs.inputs import Located, classify_locator, watch_locator
from batchclf.jobs.journal import moved_locations
from batchclf.jobs.meta import read_summary
from batchclf.jobs.rows import COLUMNS, FORMULA_PREFIXES, LEGACY_COLUMNS

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
RESULTS_JSONL = "results.jsonl"
SUMMARY_JSON = "summary.json"
JOURNAL_NAME = "watch-journal.sqlite"
DAY_PREFIX = "watch-"
BLOCK_ROWS = 4096  # records per block when reading rows back

_JOB_ID = re.compile(r"^([0-9]{8}T[0-9]{6}Z)-[0-9a-f]+\Z")
_DAY = re.compile(r"^watch-([0-9]{4}-[0-9]{2}-[0-9]{2})\Z")
_LOOKS_LIKE_JOB = re.compile(r"^(watch-|[0-9]{8}T)")  # named like a job: skipped with a warning when not a valid one
_INTEGER = re.compile(r"-?[0-9]{1,18}\Z")  # ASCII digits only, and no number too long to be a page or a size
_INT_COLUMNS = frozenset({"page", "label", "second_label", "width", "height"})
_FLOAT_COLUMNS = frozenset({"confidence", "second_confidence"})


class JobKind(StrEnum):
    CLASSIFY = "classify"
    WATCH = "watch"


# -- names and creating -------------------------------------------------------------------------


def new_job_id(now: datetime | None = None) -> str:
    """``20261124T031502Z-3f9a``: sorts by start time; the suffix keeps same-second jobs apart."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def create_job_folder(out_dir: Path, job_id: str | None = None) -> Path:
    """A new, empty classify job folder under ``out_dir``."""
    out_dir = Path(out_dir)
    while True:
        folder = out_dir / (job_id or new_job_id())
        try:
            folder.mkdir(parents=True, exist_ok=False)
            return folder
        except FileExistsError:
            job_id = None


def day_folder_name(day: str) -> str:
    """The daemon's folder for a UTC day ``YYYY-MM-DD``."""
    return f"{DAY_PREFIX}{day}"


def day_folder(out_dir: Path, day: str) -> Path:
    """The daemon's folder for ``day``, created when missing."""
    folder = Path(out_dir) / day_folder_name(day)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def partial(folder: Path, name: str) -> Path:
    """Where a classify job writes ``name`` until it is complete (hidden, ignored by readers)."""
    return Path(folder) / f".{name}.partial"


def journal_path(out_dir: Path) -> Path:
    return Path(out_dir) / JOURNAL_NAME


# -- finding jobs -------------------------------------------------------------------------------


def kind_of(folder: Path) -> JobKind | None:
    """A folder's kind from its name, or None for anything that is not a valid job name (``watch-2026-02-30`` is not)."""
    name = Path(folder).name
    if _DAY.match(name):
        return JobKind.WATCH if _name_time(name) else None
    if _JOB_ID.match(name):
        return JobKind.CLASSIFY if _name_time(name) else None
    return None


def started_at(folder: Path) -> datetime:
    """When a job began, from its name alone (a watch day begins at its UTC midnight)."""
    started = _name_time(Path(folder).name)
    if started is None:
        raise JobNotFoundError(
            f"{folder}: not a job folder (expected an id like 20261124T031502Z-3f9a or watch-YYYY-MM-DD)"
        )
    return started


def _name_time(name: str) -> datetime | None:
    """The time a job name stands for, or None when the name is not a job's or its date does not exist."""
    day = _DAY.match(name)
    job = None if day else _JOB_ID.match(name)
    try:
        if day:
            return datetime.strptime(day.group(1), "%Y-%m-%d").replace(tzinfo=timezone.utc)
        if job:
            return datetime.strptime(job.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:  # 2026-02-30, month 13, hour 99
        return None
    return None


def list_jobs(jobs_dir: Path, warnings: list[str] | None = None, now: datetime | None = None) -> list[Path]:
    """Every job folder under ``jobs_dir``, oldest first.

    A folder named like a job that is not one is skipped, with a line added
    to ``warnings``: a name whose date does not exist (``watch-2026-02-30``),
    a folder with no results (a stray ``mkdir``), or one dated more than a
    day after ``now`` (it would hide the real latest job for ever).  Other
    folders (not named like jobs) are not ours and are passed over silently.
    """
    jobs_dir = Path(jobs_dir)
    if not jobs_dir.is_dir():
        raise JobNotFoundError(f"{jobs_dir}: no jobs folder")
    latest_allowed = (now or datetime.now(timezone.utc)) + timedelta(days=1)
    found = []
    for entry in jobs_dir.iterdir():
        if not _LOOKS_LIKE_JOB.match(entry.name) or not entry.is_dir():
            continue
        started = _name_time(entry.name)
        problem = None
        if started is None:
            problem = "not a valid job name (its date or time does not exist)"
        elif not any((entry / name).exists() for name in (RESULTS_CSV, partial(entry, RESULTS_CSV).name)):
            problem = "no results.csv in it"
        elif started > latest_allowed:
            problem = "dated in the future"
        if problem:
            if warnings is not None:
                warnings.append(f"skipped {entry}: {problem}")
            continue
        found.append((started, entry.name, entry))
    return [entry for _, _, entry in sorted(found)]


def find_job(ref: str | Path, jobs_dir: Path) -> Path:
    """A job given as a folder path, a job id or a daemon day (``watch-2026-11-25`` or ``2026-11-25``)."""
    given = Path(ref)
    candidates = [given] if given.is_absolute() or os.sep in str(ref) else [Path(jobs_dir) / str(ref), given]
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(ref)):
        candidates.insert(0, Path(jobs_dir) / day_folder_name(str(ref)))
    for candidate in candidates:
        if candidate.is_dir() and (kind_of(candidate) is not None or (candidate / RESULTS_CSV).exists()):
            return candidate
    raise JobNotFoundError(f"no job {ref!s} (looked in {jobs_dir}; a job is a folder, a job id or watch-YYYY-MM-DD)")


# -- reading back -------------------------------------------------------------------------------


@dataclass
class Job:
    """A finished classify job or a (possibly live) daemon day, read back from its folder."""

    folder: Path
    kind: JobKind
    meta: dict
    torn: list[str] = field(default_factory=list)  # torn last CSV lines skipped by the last read
    inputs: tuple[Path, ...] = ()  # folders the user vouches for (report --inputs): inputs may be read there too
    _locate: object = field(default=None, init=False, repr=False, compare=False)  # built on first use

    @property
    def id(self) -> str:
        return str(self.meta.get("job_id") or self.folder.name)

    @property
    def results_csv(self) -> Path:
        return self.folder / RESULTS_CSV

    @property
    def started(self) -> datetime:
        stamp = self.meta.get("started")
        if stamp:
            return parse_time(stamp)
        return started_at(self.folder)

    def blocks(self, size: int = BLOCK_ROWS) -> Iterator[list[list[str]]]:
        """The raw CSV records of ``results.csv`` in :data:`COLUMNS` order, streamed in lists of ``size``.

        Blocks let a reader work column by column (the report summarises a
        million rows in about a second that way).  A last line without its
        newline is a row the daemon was writing when it stopped: it is skipped
        and recorded in :attr:`torn`; any other damage raises
        :class:`JobCorruptError` naming the file and the row.
        """
        path = self.results_csv
        self.torn = []
        complete = _ends_with_newline(path)
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle, strict=True)
                try:
                    header = next(reader, None)
                except csv.Error:
                    header = None
                if header is None and not complete:
                    self.torn.append("line 1: the header itself")
                    return
                if header not in (list(COLUMNS), list(LEGACY_COLUMNS)):
                    raise JobCorruptError(f"{path}: not a batchclf results file (header {header!r})")
                width = len(header)
                seen = 0
                if complete:
                    while True:
                        try:
                            block = list(islice(reader, size))
                        except csv.Error as exc:
                            raise JobCorruptError(f"{path}: line {reader.line_num}: {exc}") from None
                        if not block:
                            return
                        _check(block, seen, path, width)
                        seen += len(block)
                        yield _padded(block, width)
                # Torn: read record by record, so the records before a torn quoted field survive.
                block = []
                try:
                    for record in reader:
                        block.append(record)
                        if len(block) > size:
                            _check(block[:-1], seen, path, width)
                            seen += size
                            yield _padded(block[:-1], width)
                            block = block[-1:]
                except csv.Error:
                    self.torn.append(f"line {reader.line_num}: an unfinished quoted field")
                else:
                    if block:
                        self.torn.append(f"row {seen + len(block)}: {','.join(block.pop())[:80]}")
                if block:
                    _check(block, seen, path, width)
                    yield _padded(block, width)
        except FileNotFoundError:
            raise JobNotFoundError(f"{path}: missing (the job has no rows file)") from None
        except UnicodeDecodeError as exc:
            raise JobCorruptError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    def cells(self) -> Iterator[list[str]]:
        """The raw CSV records one by one (see :meth:`blocks`)."""
        for block in self.blocks():
            yield from block

    def rows(self) -> Iterator[dict]:
        """The job's rows as typed dicts (the shared row schema), streamed from ``results.csv``."""
        for record in self.cells():
            yield row_from_cells(record)

    def input_location(self, row: dict) -> Path | None:
        """Where a row's input file is now (its real path), or None when it is missing or may not be read.

        The rule is :mod:`batchclf.jobs.inputs`'s; :meth:`locate_input` also says why nothing was found.
        """
        return self.locate_input(row).path

    def locate_input(self, row: dict) -> Located:
        """A row's input: its real path, or None and why (``missing`` or ``outside the inputs``)."""
        return self._locator()(row.get("file"))

    def _locator(self):
        if self._locate is None:
            if self.kind is JobKind.WATCH:
                day = _DAY.match(self.folder.name)
                moved = moved_locations(journal_path(self.folder.parent), day.group(1)) if day else {}
                self._locate = watch_locator(self.meta, self.folder, moved, self.inputs)
            else:
                self._locate = classify_locator(self.meta, self.folder, self.inputs)
        return self._locate


def read_job(folder: Path, inputs: Iterable[Path] = ()) -> Job:
    """Open a job folder: its checked metadata now, its rows when :meth:`Job.rows` is iterated.

    ``inputs``: folders the user names as holding the job's inputs
    (``report --inputs``), for when they are not inside the job's own home
    (see :mod:`batchclf.jobs.inputs`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise JobNotFoundError(f"{folder}: no such job folder")
    summary = folder / SUMMARY_JSON
    if not (folder / RESULTS_CSV).exists():
        if partial(folder, RESULTS_CSV).exists():
            raise JobCorruptError(f"{folder / RESULTS_CSV}: missing; the job is still running or was interrupted")
        raise JobNotFoundError(f"{folder / RESULTS_CSV}: missing (not a job folder?)")
    if not (folder / RESULTS_CSV).is_file():
        raise JobCorruptError(f"{folder / RESULTS_CSV}: not a regular file")
    if not summary.exists():
        raise JobCorruptError(f"{summary}: missing; the job is incomplete")
    meta = read_summary(summary)
    kind = kind_of(folder) or JobKind(meta.get("kind") or JobKind.CLASSIFY)
    return Job(folder, kind, meta, inputs=tuple(Path(given) for given in inputs))


def row_from_cells(record: list[str]) -> dict:
    """A CSV record back into a typed row: numbers as numbers, empty cells as None, formula guards removed.

    A confidence that is not a finite number (NaN, infinity) is no score and
    becomes None; a number cell holding anything else is a
    :class:`JobCorruptError` (never a ValueError).
    """
    row = {}
    for column, value in zip(COLUMNS, record):
        if value == "":
            row[column] = None
        elif column in _INT_COLUMNS:
            if not _INTEGER.match(value):
                raise JobCorruptError(f"{column} {value[:40]!r} is not a whole number")
            row[column] = int(value)
        elif column in _FLOAT_COLUMNS:
            try:
                number = float(value)
            except ValueError:
                raise JobCorruptError(f"{column} {value[:40]!r} is not a number") from None
            row[column] = number if math.isfinite(number) else None
        elif value[:1] == "'" and value[1:2] and value[1:].startswith(FORMULA_PREFIXES):
            row[column] = value[1:]
        else:
            row[column] = value
    return row


def _padded(block: list[list[str]], width: int) -> list[list[str]]:
    """Records of a file written before the last columns were added, as records of :data:`COLUMNS` (empty cells)."""
    if width == len(COLUMNS):
        return block
    missing = [""] * (len(COLUMNS) - width)
    return [record + missing for record in block]


def _check(block: list[list[str]], before: int, path: Path, width: int = len(COLUMNS)) -> None:
    """Every record of a block has all columns of its header (rows are numbered from 1, after the header)."""
    if set(map(len, block)) == {width}:
        return
    index = next(i for i, record in enumerate(block) if len(record) != width)
    raise JobCorruptError(f"{path}: row {before + index + 1}: {len(block[index])} fields, expected {width}")


def parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _ends_with_newline(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return True
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"
    except FileNotFoundError:
        raise JobNotFoundError(f"{path}: missing (the job has no rows file)") from None
