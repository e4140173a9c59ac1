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
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import Iterator

from batchclf.errors import JobCorruptError, JobNotFoundError
from batchclf.jobs.rows import COLUMNS, FORMULA_PREFIXES

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
RESULTS_JSONL = "results.jsonl"
SUMMARY_JSON = "summary.json"
JOURNAL_NAME = "watch-journal.sqlite"
DAY_PREFIX = "watch-"
BLOCK_ROWS = 4096  # records per block when reading rows back

_JOB_ID = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]+$")
_DAY = re.compile(r"^watch-(\d{4}-\d{2}-\d{2})$")
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
    """A folder's kind from its name, or None for anything that is not a job folder."""
    name = Path(folder).name
    if _DAY.match(name):
        return JobKind.WATCH
    if _JOB_ID.match(name):
        return JobKind.CLASSIFY
    return None


def started_at(folder: Path) -> datetime:
    """When a job began, from its name alone (a watch day begins at its UTC midnight)."""
    name = Path(folder).name
    day = _DAY.match(name)
    if day:
        return datetime.strptime(day.group(1), "%Y-%m-%d").replace(tzinfo=timezone.utc)
    job = _JOB_ID.match(name)
    if job:
        return datetime.strptime(job.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    raise JobNotFoundError(f"{folder}: not a job folder (expected an id like 20261124T031502Z-3f9a or watch-YYYY-MM-DD)")


def list_jobs(jobs_dir: Path) -> list[Path]:
    """Every job folder under ``jobs_dir``, oldest first."""
    jobs_dir = Path(jobs_dir)
    if not jobs_dir.is_dir():
        raise JobNotFoundError(f"{jobs_dir}: no jobs folder")
    folders = [entry for entry in jobs_dir.iterdir() if entry.is_dir() and kind_of(entry) is not None]
    return sorted(folders, key=lambda folder: (started_at(folder), folder.name))


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
                if header != list(COLUMNS):
                    raise JobCorruptError(f"{path}: not a batchclf results file (header {header!r})")
                seen = 0
                if complete:
                    while True:
                        try:
                            block = list(islice(reader, size))
                        except csv.Error as exc:
                            raise JobCorruptError(f"{path}: line {reader.line_num}: {exc}") from None
                        if not block:
                            return
                        _check(block, seen, path)
                        seen += len(block)
                        yield block
                # Torn: read record by record, so the records before a torn quoted field survive.
                block = []
                try:
                    for record in reader:
                        block.append(record)
                        if len(block) > size:
                            _check(block[:-1], seen, path)
                            seen += size
                            yield block[:-1]
                            block = block[-1:]
                except csv.Error:
                    self.torn.append(f"line {reader.line_num}: an unfinished quoted field")
                else:
                    if block:
                        self.torn.append(f"row {seen + len(block)}: {','.join(block.pop())[:80]}")
                if block:
                    _check(block, seen, path)
                    yield block
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
        """Where a row's input file is now, or None when it cannot be found."""
        return self._locator()(row["file"])

    def _locator(self):
        if self._locate is None:
            self._locate = _watch_locator(self) if self.kind is JobKind.WATCH else _classify_locator(self)
        return self._locate


def read_job(folder: Path) -> Job:
    """Open a job folder: its metadata now, its rows when :meth:`Job.rows` is iterated."""
    folder = Path(folder)
    if not folder.is_dir():
        raise JobNotFoundError(f"{folder}: no such job folder")
    summary = folder / SUMMARY_JSON
    if not (folder / RESULTS_CSV).exists():
        if partial(folder, RESULTS_CSV).exists():
            raise JobCorruptError(f"{folder / RESULTS_CSV}: missing; the job is still running or was interrupted")
        raise JobNotFoundError(f"{folder / RESULTS_CSV}: missing (not a job folder?)")
    if not summary.exists():
        raise JobCorruptError(f"{summary}: missing; the job is incomplete")
    try:
        meta = json.loads(summary.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JobCorruptError(f"{summary}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise JobCorruptError(f"{summary}: expected a JSON object")
    kind = kind_of(folder) or JobKind(meta.get("kind", JobKind.CLASSIFY))
    return Job(folder, kind, meta)


def row_from_cells(record: list[str]) -> dict:
    """A CSV record back into a typed row: numbers as numbers, empty cells as None, formula guards removed."""
    row = {}
    for column, value in zip(COLUMNS, record):
        if value == "":
            row[column] = None
        elif column in _INT_COLUMNS:
            row[column] = int(value)
        elif column in _FLOAT_COLUMNS:
            row[column] = float(value)
        elif value[:1] == "'" and value[1:2] and value[1:].startswith(FORMULA_PREFIXES):
            row[column] = value[1:]
        else:
            row[column] = value
    return row


def _check(block: list[list[str]], before: int, path: Path) -> None:
    """Every record of a block has all columns (rows are numbered from 1, after the header)."""
    width = len(COLUMNS)
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


def _classify_locator(job: Job):
    """A classify row's ``file`` is relative to the folder the user named (a file's parent for a file)."""
    roots = []
    if job.meta.get("files_relative_to"):  # several inputs: names are relative to their common parent
        roots.append(Path(job.meta["files_relative_to"]))
    for given in job.meta.get("inputs", []):
        path = Path(given)
        roots.append(path if path.is_dir() else path.parent)

    def locate(relative: str) -> Path | None:
        for root in roots:
            candidate = root / relative
            # The rule prediction follows: a link resolving outside its root is never read.
            if candidate.is_file() and _inside(root, candidate):
                return candidate
        return None

    return locate


def _inside(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


def _watch_locator(job: Job):
    """A daemon row's ``file`` is inbox-relative; the journal records where each file was moved."""
    from batchclf.watch.journal import moved_locations

    day = _DAY.match(job.folder.name)
    moved = moved_locations(journal_path(job.folder.parent), day.group(1)) if day else {}
    inbox = Path(job.meta["inbox"]) if job.meta.get("inbox") else None

    def locate(relative: str) -> Path | None:
        for candidate in (moved.get(relative), inbox / relative if inbox else None):
            if candidate and Path(candidate).is_file():
                return Path(candidate)
        return None

    return locate
