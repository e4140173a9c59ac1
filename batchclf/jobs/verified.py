"""A job's ``verified.csv``: its rows after a person's review, read back for reports and training.

``batchclf review apply`` (:mod:`batchclf.review.apply`) writes it beside
``results.csv``, which it never changes.  It has every row of the job in
:data:`COLUMNS` order with ``label`` and ``status`` final, then four more
columns (:data:`EXTRA_COLUMNS`):

- ``model_label``: the label the model gave (``results.csv``'s ``label``);
- ``decided_by``: ``person`` for a row a person decided in the review sheet, else ``model``;
- ``decided_at``: when the person decided (UTC, ISO 8601), else the row's ``processed_at``;
- ``decision``: ``accepted`` (the model's label confirmed), ``corrected`` (another digit),
  ``not-a-digit`` or ``blank`` (``status`` says the same, ``label`` is empty); empty for the model's rows.

Readers: :func:`verified_rows` (typed rows, streamed), :func:`verified_blocks` (raw
records in blocks, like ``Job.blocks``, for the report's column-wise pass), :func:`person_counts`
(how many rows a person confirmed, corrected, ... ; None without a ``verified.csv``)
and :func:`person_labels` (the digits a person gave, for training).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Iterator

from batchclf.errors import JobCorruptError
from batchclf.jobs.folder import BLOCK_ROWS, row_from_cells
from batchclf.jobs.rows import COLUMNS, STATUSES

VERIFIED_CSV = "verified.csv"
VERIFIED_JSON = "verified.json"
EXTRA_COLUMNS = ("model_label", "decided_by", "decided_at", "decision")
VERIFIED_COLUMNS = COLUMNS + EXTRA_COLUMNS

PERSON, MODEL = "person", "model"
ACCEPTED, CORRECTED, NOT_A_DIGIT, BLANK = "accepted", "corrected", "not-a-digit", "blank"
DECISIONS = (ACCEPTED, CORRECTED, NOT_A_DIGIT, BLANK)
# Every status a verified row can have: classify's, and not-a-digit, which only a person gives (blank is one of classify's).
VERIFIED_STATUSES = STATUSES + (NOT_A_DIGIT,)
# The keys of person_counts, one per decision: what ``report`` shows per job.
COUNT_KEYS = {ACCEPTED: "confirmed", CORRECTED: "corrected", NOT_A_DIGIT: "not_a_digit", BLANK: "blank"}


def has_verified(folder: Path) -> bool:
    return (Path(folder) / VERIFIED_CSV).is_file()


def verified_rows(folder: Path) -> Iterator[dict]:
    """The rows of ``folder/verified.csv`` as typed dicts (the row schema plus :data:`EXTRA_COLUMNS`)."""
    path = Path(folder) / VERIFIED_CSV
    for line, record in _records(path):
        yield _typed(record, path, line)


def verified_blocks(folder: Path, size: int = BLOCK_ROWS, tally: "PersonTally | None" = None) -> Iterator[list[list[str]]]:
    """The raw records of ``folder/verified.csv`` cut to :data:`COLUMNS`, in lists of ``size``: a drop-in for
    :meth:`batchclf.jobs.folder.Job.blocks` (``status`` may also be ``not-a-digit`` here).

    ``tally``: counts who decided what in the same pass, so a reader that
    needs both (the report) reads the file once, not again for :func:`person_counts`.
    """
    block = []
    width = len(COLUMNS)
    for line, record in _records(Path(folder) / VERIFIED_CSV):
        if tally is not None:
            tally.add(line, record)
        block.append(record[:width])
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, record)`` of a verified.csv, every record checked for its width; damage is a JobCorruptError."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if header != list(VERIFIED_COLUMNS):
                raise JobCorruptError(f"{path}: not a batchclf verified file (header {header!r})")
            width = len(VERIFIED_COLUMNS)
            for record in reader:
                if len(record) != width:
                    raise JobCorruptError(f"{path}: line {reader.line_num}: {len(record)} fields, expected {width}")
                yield reader.line_num, record
    except FileNotFoundError:
        raise JobCorruptError(f"{path}: missing") from None
    except csv.Error as exc:
        raise JobCorruptError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise JobCorruptError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def person_counts(folder: Path) -> dict | None:
    """``{"rows", "person", "confirmed", "corrected", "not_a_digit", "blank"}`` of ``folder/verified.csv``; None without one."""
    if not has_verified(folder):
        return None
    path = Path(folder) / VERIFIED_CSV
    tally = PersonTally(path)
    for line, record in _records(path):
        tally.add(line, record)
    return tally.counts()


class PersonTally:
    """Who decided what in a ``verified.csv``, counted record by record as it is read (:func:`person_counts`).

    Only the two columns that say who decided what are looked at (the report
    runs this on million-row days): each distinct pair is checked once, as
    _typed checks it, and a bad one names its first line.
    """

    _BY = len(COLUMNS) + EXTRA_COLUMNS.index("decided_by")
    _WHAT = len(COLUMNS) + EXTRA_COLUMNS.index("decision")

    def __init__(self, path: Path):
        self.path = path
        self._pairs: Counter = Counter()
        self._first_line: dict[tuple[str, str], int] = {}

    def add(self, line: int, record: list[str]) -> None:
        pair = (record[self._BY], record[self._WHAT])
        self._pairs[pair] += 1
        self._first_line.setdefault(pair, line)

    def counts(self) -> dict:
        counts = {"rows": sum(self._pairs.values()), "person": 0, **{key: 0 for key in COUNT_KEYS.values()}}
        for (decided_by, decision), n in self._pairs.items():
            _check_decision(decided_by, decision, self.path, self._first_line[(decided_by, decision)])
            if decided_by == PERSON:
                counts["person"] += n
                counts[COUNT_KEYS[decision]] += n
        return counts


def person_rows(folder: Path) -> Iterator[dict]:
    """The rows of ``folder/verified.csv`` a person decided (accepted, corrected, not a digit, blank)."""
    for row in verified_rows(folder):
        if row["decided_by"] == PERSON:
            yield row


def person_labels(folder: Path) -> Iterator[tuple[str, int | None, int]]:
    """``(file, page, label)`` of every row a person gave a digit (accepted or corrected): training data.

    Rows a person called not a digit or blank have no label and are left out.
    """
    for row in person_rows(folder):
        if row["decision"] in (ACCEPTED, CORRECTED):
            yield row["file"], row["page"], row["label"]


def _typed(record: list[str], path: Path, line: int) -> dict:
    try:
        row = row_from_cells(record[: len(COLUMNS)])
        model_label, decided_by, decided_at, decision = record[len(COLUMNS):]
        row["model_label"] = int(model_label) if model_label else None
    except ValueError as exc:
        raise JobCorruptError(f"{path}: line {line}: {exc}") from None
    _check_decision(decided_by, decision, path, line)
    row.update(decided_by=decided_by, decided_at=decided_at or None, decision=decision or None)
    return row


def _check_decision(decided_by: str, decision: str, path: Path, line: int) -> None:
    """A person's row has one of the decisions, a model's row none."""
    if decided_by not in (PERSON, MODEL) or (decision or None) not in (*DECISIONS, None) or (decided_by == PERSON) != bool(decision):
        raise JobCorruptError(f"{path}: line {line}: decided_by {decided_by!r} with decision {decision!r}")
