"""Step 1 of a batch: decide each file's rows and fate (duplicate, labelled, blank, failed; where it goes).

Pure apart from the model call and one journal read: given the prepared
files of a batch, return the rows to report and the file records to commit.
"""

from __future__ import annotations

from batchclf.engines.consume import consume
from batchclf.jobs.folder import day_folder_name
from batchclf.jobs.rows import FAILED, content_digest, duplicate
from batchclf.watch.intake import Taken
from batchclf.watch.journal import FAILED_MOVE, PROCESSED, FileRecord, Journal


def first_row_ref(day: str, relative: str) -> str:
    """How a row is referred to by ``duplicate_of``: ``watch-YYYY-MM-DD/<file>#1``."""
    return f"{day_folder_name(day)}/{relative}#1"


def duplicates_in(batch: list[Taken], journal: Journal, day: str) -> dict[str, str]:
    """Files of the batch whose bytes were reported before (earlier, or earlier in this batch): name -> first row."""
    digests = {}
    for taken in batch:
        sha = content_digest(p.row for p in taken.prepared)  # the rule classify --dedupe applies too
        if sha is not None:
            digests[taken.relative] = sha
    reported = journal.first_reports_of(list(digests.values()))
    seen_in_batch: dict[str, str] = {}
    duplicates = {}
    for taken in batch:
        sha = digests.get(taken.relative)
        if sha is None:
            continue
        first = seen_in_batch.get(sha) or reported.get(sha)
        if first:
            duplicates[taken.relative] = first
        else:
            seen_in_batch[sha] = first_row_ref(day, taken.relative)
    return duplicates


def decide(batch: list[Taken], journal: Journal, predictor, review_below: float, day: str, keep: bool):
    """``(rows, records)``: every page's row with its day, and one journal record per file."""
    duplicates = duplicates_in(batch, journal, day)
    fresh = [item for t in batch if t.relative not in duplicates for item in t.prepared]
    labelled = iter(consume(fresh, predictor, review_below))
    rows, records = [], []
    for taken in batch:
        file_rows = []
        for item in taken.prepared:
            if taken.relative in duplicates:
                row = duplicate(item.row, duplicates[taken.relative], predictor.name)
            else:
                row = next(labelled)
            file_rows.append(row)
        rows.extend((day, row) for row in file_rows)
        lead = file_rows[0]  # every taken file has at least one row (the dispatcher guarantees it)
        broken = any(r["status"] == FAILED for r in file_rows)
        # Only a file the rule lets take part is a first copy a later batch's file can be a duplicate of.
        first_copy = taken.relative not in duplicates and content_digest(file_rows) is not None
        records.append(
            FileRecord(
                path=taken.relative, size=taken.size, mtime_ns=taken.mtime_ns,
                sha256=lead.get("sha256"), status=lead["status"], day=day,
                first_row=first_row_ref(day, taken.relative) if first_copy else None,
                move_kind=None if keep else (FAILED_MOVE if broken else PROCESSED),
                reason=lead.get("error") if broken else None,
                source=taken.source,
                ctime_ns=taken.ctime_ns,  # tells a later look whether this is still the same file
            )
        )
    return rows, records
